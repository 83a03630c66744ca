"""Registry-to-registry copy speed against skopeo, measured in the same run.

Builds a Kubeflow-sized workload in a local source registry (about 120 images and 1.5 GB:
shared base layers, nested repository paths, multi-arch indexes, images referenced only by
digest), then prints:

* kferry's wall time for `kferry mirror` (all images, one command) divided by the wall time
  of `skopeo copy --all --preserve-digests` run image by image (target <= 0.5);
* the same against `skopeo sync --all` for the tagged images (sync needs tags);
* the same workload copied by `crane copy` and by `regctl image copy` (built from their Go
  modules by `scripts/peers --bench`), 8 images at a time, and kferry's ratio to the fastest
  of skopeo, crane and regctl (goal <= 0.6);
* the wall time of a rerun of `kferry mirror` with nothing left to copy (goal <= 1 s);
* the size of a `kferry bundle save` directory divided by the sum of the unique blob and
  manifest sizes (target 1.00);
* the size `bundle save --dry-run` estimates (manifests only) divided by the bytes the save then
  writes under ``blobs/`` (must be 1.0000);
* `kferry bundle load` of that bundle against `skopeo copy --all --preserve-digests` of the
  same images from the bundle as an OCI layout (``oci:BUNDLE:NAME``), image by image;
* the size of a delta bundle (`bundle save --since` the first bundle) after 20% of the images
  changed (a new top layer under a new tag), against the full bundle of the new set;
* kferry's peak RSS while copying an image with a 2 GB layer (target <= 200 MB).

Registries are real distribution servers on loopback (Debian's docker-registry), the target
with TLS from a test CA and htpasswd auth, as in the test suite.

    python bench/mirror.py [--images 120] [--scale 1.0] [--big-layer-mb 2048] [--jobs 8]
                           [--mirror-only] [--reruns 1]

``--mirror-only`` stops after the mirror and its no-op rerun(s) (no peers, bundles or big
layer); ``--reruns N`` times the no-op rerun N times and prints each and the median.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.images import (  # noqa: E402
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Media,
    PushedImage,
    push_blob,
    push_image,
    push_index,
    push_manifest,
)
from tests.support.registry import Registry, start_registry, write_docker_config  # noqa: E402
from tests.support.skopeo import skopeo_copy  # noqa: E402

from bench.measure import run_child  # noqa: E402

MB = 1_000_000


def build_workload(src: Registry, n: int, scale: float) -> list[PushedImage]:
    """~n images, ~1.5 GB * scale, Kubeflow-like: shared bases, deep paths, indexes."""
    rnd = random.Random(42)

    def blob(size: float, seed: str) -> bytes:
        return random.Random(seed).randbytes(max(1, int(size * scale)))

    bases = [blob(25 * MB, f"os{i}") for i in range(4)]
    runtimes = [blob(35 * MB, f"rt{i}") for i in range(4)]
    paths = [
        "knative-releases/knative.dev/serving/cmd/c{i}",
        "kubeflow/kubeflow/notebook-servers/app{i}",
        "ml-pipeline/component{i}",
        "kserve/server{i}",
        "kubeflowkatib/suggestion/alg{i}",
    ]
    images: list[PushedImage] = []
    n_index = max(1, n // 12)
    for i in range(n - n_index):
        repo = paths[i % len(paths)].format(i=i)
        shared = [bases[i % 4]] + ([runtimes[i % 4]] if i % 2 else [])
        unique = [blob(rnd.uniform(2, 18) * MB, f"u{i}")]
        tag = None if i % 6 == 5 else f"v1.{i}"  # every sixth image by digest only
        media: Media = "docker" if i % 3 == 0 else "oci"
        images.append(
            push_image(src, repo, tag=tag, layers=unique, shared_layers=shared, media=media, seed=i)
        )
    for j in range(n_index):
        repo = f"istio/proxy-multi{j}"
        children = [
            push_image(
                src,
                repo,
                layers=[blob(5 * MB, f"m{j}{p}")],
                shared_layers=[bases[j % 4]],
                platform=p,
                seed=f"{j}{p}",
            )
            for p in ("linux/amd64", "linux/arm64/v8")
        ]
        images.append(push_index(src, repo, images=children, tag=f"1.{j}"))
    return images


def push_big_image(src: Registry, repo: str, size: int) -> str:
    """An image with one ``size``-byte layer, streamed up in chunks (never whole in memory)."""
    chunk = 16 << 20
    h = hashlib.sha256()
    with src.client() as c:
        location = str(c.post(f"/v2/{repo}/blobs/uploads/").headers["Location"])
        offset = 0
        for i in range(0, size, chunk):
            data = random.Random(i).randbytes(min(chunk, size - i))
            h.update(data)
            r = c.patch(
                location,
                content=data,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(data) - 1}",
                },
            )
            r.raise_for_status()
            location = str(r.headers["Location"])
            offset += len(data)
        layer = "sha256:" + h.hexdigest()
        sep = "&" if "?" in location else "?"
        c.put(f"{location}{sep}digest={layer}").raise_for_status()
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer]},
            }
        ).encode()
        config_digest = push_blob(c, repo, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer, "size": size}],
            }
        ).encode()
        push_manifest(c, repo, "1", manifest, OCI_MANIFEST)
    return f"{src.host}/{repo}:1"


def ref(img: PushedImage) -> str:
    return img.tag_ref if img.tag else img.ref


def unique_bytes(images: list[PushedImage]) -> int:
    seen: dict[str, int] = {}
    for img in images:
        for m in img.manifests():
            seen[m.digest] = m.size
        for b in img.blobs:
            seen[b.digest] = b.size
    return sum(seen.values())


def kferry_mirror(
    refs: list[str],
    src: Registry,
    dst: Registry,
    jobs: int,
    lock: Path,
) -> tuple[float, float, str]:
    cmd = [
        sys.executable,
        "-m",
        "kferry",
        "mirror",
        *refs,
        "--plain-http",
        src.host,
        "--to",
        f"{dst.host}/kf",
        "--ca-file",
        str(dst.ca_file),
        "--username",
        str(dst.username),
        "--password-stdin",
        "--jobs",
        str(jobs),
        "-o",
        "json",
        "--lock",
        str(lock),
    ]
    m = run_child(cmd, f"{dst.password}\n".encode())
    return m.wall, m.peak_rss_mib, m.out


def kferry_json(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "kferry", *args], check=True, stdout=subprocess.PIPE
    ).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def blob_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())


def kferry_load(bundle: Path, dst: Registry, jobs: int, lock: Path) -> float:
    cmd = [
        sys.executable, "-m", "kferry", "bundle", "load", str(bundle),
        "--to", f"{dst.host}/kf", "--ca-file", str(dst.ca_file),
        "--username", str(dst.username), "--password-stdin",
        "--jobs", str(jobs), "-o", "json", "--lock", str(lock),
    ]  # fmt: skip
    return run_child(cmd, f"{dst.password}\n".encode()).wall


def skopeo_from_layout(bundle: Path, images: list[PushedImage], dst: Registry) -> float:
    """``skopeo copy --all --preserve-digests oci:BUNDLE:NAME docker://...`` image by image
    (the names are the bundle's ``org.opencontainers.image.ref.name``)."""
    t = 0.0
    for img in images:
        target = f"{dst.host}/kf/{img.repo}" + (f":{img.tag}" if img.tag else "")
        cmd = [
            "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
            "--dest-cert-dir", str(dst.cert_dir), "--dest-creds", f"{dst.username}:{dst.password}",
            f"oci:{bundle}:{ref(img)}", f"docker://{target}",
        ]  # fmt: skip
        t += run_child(cmd).wall
    return t


def change_some(src: Registry, images: list[PushedImage], share: float) -> list[PushedImage]:
    """The workload after an upgrade: ``share`` of the images (single-platform ones, spread
    evenly) get a new top layer (same bases) under a new tag; the others stay as they were."""
    singles = [i for i, img in enumerate(images) if not img.is_index]
    want = round(share * len(images))
    pick = {singles[k * len(singles) // want] for k in range(want)} if want else set()
    out = []
    for i, img in enumerate(images):
        if i not in pick:
            out.append(img)
            continue
        top = img.layers[-1]
        media: Media = "docker" if "docker" in img.media_type else "oci"
        out.append(
            push_image(
                src,
                img.repo,
                tag=f"{img.tag or 'd'}-u",
                layers=[random.Random(f"up{i}").randbytes(top.size)],
                shared_layers=[b.data for b in img.layers[:-1]],
                media=media,
                seed=f"up{i}",
            )
        )
    return out


def bench_peers() -> Path:
    """crane and regctl, built once into the peer cache (KFERRY_PEER_CACHE) on first use."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "peers"), "--bench"], check=True, stdout=subprocess.PIPE
    )
    return Path(out.stdout.decode().strip())


def peer_copy(
    tool: str,
    peers: Path,
    images: list[PushedImage],
    src: Registry,
    dst: Registry,
    work: Path,
    at_once: int = 8,
) -> float:
    """Wall time of ``crane copy`` or ``regctl image copy`` of every image, ``at_once`` copies
    running at a time (each copies all platforms and keeps digests). Credentials go through
    the tools' own config files, never argv."""
    home = work / f"{tool}-home"
    home.mkdir()
    assert dst.ca_file is not None
    env = dict(
        os.environ, HOME=str(home), DOCKER_CONFIG=str(write_docker_config(home / "docker", dst))
    )
    env["SSL_CERT_FILE"] = str(dst.ca_file)
    exe = str(peers / tool)
    if tool == "regctl":
        for args, stdin in [
            (["registry", "set", src.host, "--tls", "disabled"], None),
            (["registry", "set", dst.host, "--cacert", dst.ca_file.read_text()], None),
            (
                ["registry", "login", dst.host, "-u", str(dst.username), "--pass-stdin"],
                f"{dst.password}\n".encode(),
            ),
        ]:
            subprocess.run([exe, *args], env=env, input=stdin, check=True, capture_output=True)

    def one(img: PushedImage) -> None:
        target = f"{dst.host}/kf/{img.repo}" + (f":{img.tag}" if img.tag else f"@{img.digest}")
        if tool == "crane":
            cmd = [exe, "copy", "--insecure", ref(img), target]  # --insecure: the http source
        else:
            cmd = [exe, "image", "copy", ref(img), target]
        res = subprocess.run(cmd, env=env, capture_output=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.decode(errors='replace')}")

    t = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, images))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply layer sizes")
    ap.add_argument("--big-layer-mb", type=int, default=2048)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--mirror-only", action="store_true", help="stop after the no-op rerun")
    ap.add_argument("--reruns", type=int, default=1, help="time the no-op rerun N times")
    args = ap.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (scripts/system-deps installs it)")

    t = time.perf_counter()
    peers = Path() if args.mirror_only else bench_peers()
    if not args.mirror_only:
        print(f"bench peers ready in {time.perf_counter() - t:.1f} s: {peers}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="kferry-bench-"))
    regs: list[Registry] = []

    def registry(name: str, tls: bool) -> Registry:
        r = start_registry(work / name, tls=tls, auth="htpasswd" if tls else None)
        regs.append(r)
        return r

    try:
        src = registry("source", False)
        t = time.perf_counter()
        images = build_workload(src, args.images, args.scale)
        total = unique_bytes(images)
        print(
            f"workload: {len(images)} images ({sum(1 for i in images if i.is_index)} "
            f"multi-arch, {sum(1 for i in images if not i.tag)} by digest only), "
            f"{total / MB:.0f} MB unique, built in {time.perf_counter() - t:.0f} s"
        )
        refs = [ref(i) for i in images]

        t_kferry, rss, _ = kferry_mirror(
            refs, src, registry("t-kferry", True), args.jobs, work / "lock.json"
        )
        print(
            f"kferry mirror, {len(images)} images, --jobs {args.jobs}: {t_kferry:8.2f} s "
            f"(peak RSS {rss:.0f} MiB)",
            flush=True,
        )
        reruns = []
        for _ in range(max(1, args.reruns)):
            rerun, _, out = kferry_mirror(refs, src, regs[-1], args.jobs, work / "lock.json")
            assert '"copied": 0' in out, out
            reruns.append(rerun)
            print(
                f"kferry rerun, nothing to copy:           {rerun:8.2f} s  (goal <= 1 s)",
                flush=True,
            )
        if len(reruns) > 1:
            print(
                f"  median of {len(reruns)} reruns:                 "
                f"{statistics.median(reruns):8.2f} s",
                flush=True,
            )
        if args.mirror_only:
            return

        skopeo_target = registry("t-skopeo", True)
        t_skopeo = 0.0
        for img in images:
            dst = f"{skopeo_target.host}/kf/{img.repo}" + (f":{img.tag}" if img.tag else "")
            t_skopeo += skopeo_copy(
                ref(img), dst, src_registry=src, dst_registry=skopeo_target
            ).seconds
        print(f"skopeo copy --all, image by image:       {t_skopeo:8.2f} s")
        print(
            f"  ratio kferry / skopeo copy:            {t_kferry / t_skopeo:8.2f}  (target <= 0.5)",
            flush=True,
        )
        peer_times = {"skopeo copy": t_skopeo}
        for tool, label in [("crane", "crane copy"), ("regctl", "regctl image copy")]:
            peer_times[label] = peer_copy(
                tool, peers, images, src, registry(f"t-{tool}", True), work
            )
            print(f"{label + ', 8 images at a time:':<41}{peer_times[label]:8.2f} s", flush=True)
        fastest = min(peer_times, key=lambda k: peer_times[k])
        print(
            f"  ratio kferry / fastest peer ({fastest}): "
            f"{t_kferry / peer_times[fastest]:8.2f}  (goal <= 0.6)",
            flush=True,
        )

        tagged = [i for i in images if i.tag]
        sync_target = registry("t-sync", True)
        yaml_file = work / "sync.yaml"
        lines = [f"{src.host}:", "  tls-verify: false", "  images:"]
        for img in tagged:
            lines.append(f"    {img.repo}: ['{img.tag}']")
        yaml_file.write_text("\n".join(lines) + "\n")
        cmd = [
            "skopeo",
            "--insecure-policy",
            "sync",
            "--all",
            "--preserve-digests",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-cert-dir",
            str(sync_target.cert_dir),
            "--dest-creds",
            f"{sync_target.username}:{sync_target.password}",
            str(yaml_file),
            f"{sync_target.host}/kf",
        ]
        t_sync = run_child(cmd).wall
        t_kferry_tagged, _, _ = kferry_mirror(
            [ref(i) for i in tagged],
            src,
            registry("t-kferry-tagged", True),
            args.jobs,
            work / "lock-tagged.json",
        )
        print(f"kferry mirror, {len(tagged)} tagged images:          {t_kferry_tagged:8.2f} s")
        print(f"skopeo sync --all, same images:          {t_sync:8.2f} s")
        print(
            f"  ratio kferry / skopeo sync:            {t_kferry_tagged / t_sync:8.2f}", flush=True
        )

        bundle = work / "bundle"
        estimate = kferry_json(
            [
                "bundle",
                "save",
                *refs,
                "--plain-http",
                src.host,
                "-o",
                str(bundle),
                "--dry-run",
                "--json",
            ]
        )
        run_child(
            [
                sys.executable,
                "-m",
                "kferry",
                "bundle",
                "save",
                *refs,
                "--plain-http",
                src.host,
                "-o",
                str(bundle),
                "--jobs",
                str(args.jobs),
            ]
        )
        on_disk = blob_bytes(bundle)
        on_disk_all = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        print(
            f"bundle blobs / unique blobs+manifests:   {on_disk / total:8.4f}  "
            f"(whole directory incl. index.json: {on_disk_all / total:.4f}; target 1.00)",
            flush=True,
        )
        print(
            f"size estimate / bytes written:           {estimate['total_bytes'] / on_disk:8.4f}  "
            f"(bundle save --dry-run, manifests only; must be 1.0000)",
            flush=True,
        )

        # skopeo 1.9 reads only OCI-typed manifests from an OCI layout ("no descriptor found"
        # for a Docker schema 2 one), so both tools load the OCI-typed images, from one bundle
        oci_images = [i for i in images if "oci" in i.media_type]
        oci_bundle = work / "bundle-oci"
        run_child(
            [
                sys.executable, "-m", "kferry", "bundle", "save", *[ref(i) for i in oci_images],
                "--plain-http", src.host, "-o", str(oci_bundle), "--jobs", str(args.jobs),
            ]
        )  # fmt: skip
        t_load = kferry_load(oci_bundle, registry("t-load", True), args.jobs, work / "lock-l.json")
        print(
            f"kferry bundle load, {len(oci_images)} OCI-typed images:  {t_load:8.2f} s", flush=True
        )
        t_oci = skopeo_from_layout(oci_bundle, oci_images, registry("t-skopeo-oci", True))
        print(f"skopeo copy oci:BUNDLE:NAME, one by one:  {t_oci:8.2f} s", flush=True)
        print(f"  ratio kferry load / skopeo copy:       {t_load / t_oci:8.2f}", flush=True)
        shutil.rmtree(oci_bundle)

        changed = change_some(src, images, 0.2)
        new_refs = [ref(i) for i in changed]
        new_full = kferry_json(
            [
                "bundle",
                "save",
                *new_refs,
                "--plain-http",
                src.host,
                "-o",
                "x",
                "--dry-run",
                "--json",
            ]
        )
        delta = work / "delta"
        t = time.perf_counter()
        kferry_json(
            [
                "bundle", "save", *new_refs, "--plain-http", src.host, "-o", str(delta),
                "--since", str(bundle), "--json",
            ]
        )  # fmt: skip
        t_delta = time.perf_counter() - t
        n_changed = sum(1 for a, b in zip(images, changed, strict=True) if a is not b)
        full_bytes, delta_bytes = new_full["total_bytes"], blob_bytes(delta)
        print(
            f"delta bundle, {n_changed} of {len(images)} images changed:  "
            f"{delta_bytes / MB:8.1f} MB = {delta_bytes / full_bytes:.4f} of the full bundle "
            f"({full_bytes / MB:.0f} MB); saved in {t_delta:.1f} s",
            flush=True,
        )
        shutil.rmtree(bundle)
        shutil.rmtree(delta)

        for r in regs[1:]:  # free the disk before the big layer
            r.stop()
            shutil.rmtree(r.storage, ignore_errors=True)
        big_mb = args.big_layer_mb
        big = push_big_image(src, "big/layer", big_mb << 20)
        t_big, big_rss, _ = kferry_mirror(
            [big], src, registry("t-big", True), 2, work / "lock-big.json"
        )
        print(
            f"peak RSS copying a {big_mb} MiB layer:        {big_rss:8.0f} MiB  "
            f"(target <= 200; {t_big:.1f} s)",
            flush=True,
        )
    finally:
        for r in regs:
            r.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
