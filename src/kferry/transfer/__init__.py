"""Transfer stage: copy images byte for byte, registry to registry and through OCI bundles.

``registry`` speaks the registry API (after go-containerregistry's ``remote``) over
``transport`` (TLS, connection pool, retries with backoff) with ``auth`` answering challenges
(Basic, the bearer token flow) from the credentials ``credentials`` finds; ``digest`` verifies
bytes on their way through; ``errors`` names what can go wrong. ``layout`` reads, writes,
packs and verifies OCI image layouts (its ``layout``), ``media`` knows manifest types,
``stores`` puts registries and layouts behind one interface and ``copy`` moves images between
any two of them.
"""
