// Command referrers-registry serves go-containerregistry's registry (pkg/registry, the one
// behind `crane registry serve`) with its OCI 1.1 referrers API turned on, which `crane
// registry serve` leaves off: GET /v2/<name>/referrers/<digest>. A test peer of kferry only
// (built by scripts/peers referrers-registry): manifests in memory, blobs under --dir,
// loopback only, optional TLS. Not part of kferry.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("address", "127.0.0.1:0", "address to listen on")
	dir := flag.String("dir", "", "directory for blobs (empty: in memory)")
	cert := flag.String("tls-cert", "", "TLS certificate (PEM); with --tls-key serves HTTPS")
	key := flag.String("tls-key", "", "TLS key (PEM)")
	flag.Parse()

	blobs := registry.NewInMemoryBlobHandler()
	if *dir != "" {
		blobs = registry.NewDiskBlobHandler(*dir)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: registry.New(
			registry.WithBlobHandler(blobs),
			registry.WithReferrersSupport(true),
		),
	}
	fmt.Printf("serving on %s\n", listener.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	errs := make(chan error, 1)
	go func() {
		if *cert != "" {
			errs <- server.ServeTLS(listener, *cert, *key)
		} else {
			errs <- server.Serve(listener)
		}
	}()
	select {
	case <-stop:
		_ = server.Close()
	case err := <-errs:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}
}
