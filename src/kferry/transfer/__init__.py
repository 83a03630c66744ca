"""Transfer stage: copy images byte for byte, registry to registry and through OCI bundles.

``remote`` speaks the registry protocol (after go-containerregistry's ``remote``), ``layout``
reads and writes OCI image layouts (its ``layout``), ``media`` knows manifest types, ``auth``
finds credentials, ``stores`` puts registries and layouts behind one interface and ``copy``
moves images between any two of them.
"""
