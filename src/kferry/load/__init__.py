"""Load stage: rendered YAML files, stdin or kustomize directories -> Kubernetes objects.

``read_sources`` turns the command-line paths into :class:`Source` texts (running kustomize
for kustomization directories), ``parse_documents`` turns a source into :class:`Document`
objects whose YAML nodes keep their positions (rewrite needs them to change only the bytes of
a reference), ``load_objects`` gives the Kubernetes objects (``List`` kinds unpacked).
"""

from kferry.load.documents import Document, KubeObject, load_objects, objects, parse_documents
from kferry.load.source import Source, read_sources

__all__ = [
    "Document",
    "KubeObject",
    "Source",
    "load_objects",
    "objects",
    "parse_documents",
    "read_sources",
]
