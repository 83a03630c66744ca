"""OCI image layouts on disk: the offline bundle (a directory, a ``.tar`` or a ``.tar.zst``).

Layout (OCI image-layout spec 1.0): ``oci-layout``, ``index.json`` naming each image by its
source reference (``org.opencontainers.image.ref.name`` and containerd's
``io.containerd.image.name``), and ``blobs/sha256/<hex>``, every blob once however many images
share it. Manifests are stored exactly as fetched.

Writing goes to a staging directory (``OUT.kferry-partial`` beside a tar output, or the output
directory itself); each blob is streamed to ``<hex>.partial``, verified, and renamed, so an
interrupted save resumes where it stopped and never leaves a damaged blob under its digest.
``index.json`` and the tar file are written atomically at the end. The tar puts ``oci-layout``
and ``index.json`` first so that readers can stream it. One run at a time writes an output
(``.OUT.kferry-lock``, see :mod:`kferry.scratch`); the packing file ``.OUT.kferry-pack-*`` is
removed on SIGTERM, and one left by a killed run is removed by the next. A ``.tar.zst`` being
loaded is unpacked under ``--tmp-dir``/``TMPDIR``, never next to the bundle (a DVD or a full
USB stick), and removed on every exit. No library writes OCI layouts for
Python; the format is small and fully specified, so it is written here.

One module per role: :mod:`.index` (the format itself), :mod:`.write`, :mod:`.pack` (tar and
zstd), :mod:`.read` and :mod:`.verify`.
"""
