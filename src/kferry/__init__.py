"""kferry: take Kubeflow across the air gap.

The pipeline is the package layout: ``load`` -> ``discover`` -> ``plan`` -> ``transfer`` ->
``rewrite`` -> ``fix`` -> ``apply``, plus day-2 (``users``, ``status``, ``doctor``). ``name``
holds image references, ``catalog`` the Kubeflow knowledge (data), ``cli`` the thin command line.
"""

__version__ = "0.1.0"
