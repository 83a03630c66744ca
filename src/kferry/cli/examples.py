"""The Examples part of every command's ``--help``, kept in one place (attached to each
command's epilog when the command is loaded; tests/test_conventions.py checks every command
has one and that each example parses)."""

from __future__ import annotations

import click

REG = "harbor.local:8443/kubeflow"

EXAMPLES: dict[str, tuple[str, ...]] = {
    "": (
        "kferry images RENDER.yaml",
        f"kferry airgap RENDER.yaml --to {REG} -o private.yaml",
        "kferry -v mirror --from RENDER.yaml --to " + REG,
        "kferry help exit-codes",
    ),
    "airgap": (
        f"kferry airgap RENDER.yaml --to {REG} -o private.yaml --ca-file harbor-ca.pem",
        "kferry airgap RENDER.yaml --bundle kubeflow.tar.zst -o private.yaml --to " + REG,
    ),
    "apply": (
        "kferry apply private.yaml --timeout 10m",
        f"kferry apply private.yaml --wait --registry {REG} -o yaml",
    ),
    "bundle": (
        "kferry bundle save --from RENDER.yaml -o kubeflow.tar.zst",
        "kferry bundle verify kubeflow.tar.zst",
        f"kferry bundle load kubeflow.tar.zst --to {REG} --ca-file harbor-ca.pem",
    ),
    "bundle save": (
        "kferry bundle save --from RENDER.yaml -o kubeflow.tar.zst",
        "kferry bundle save --from RENDER.yaml --platform linux/amd64 -o images/",
        "kferry bundle save -f images.txt --shard 1/2 --no-referrers -o part-1.tar",
    ),
    "bundle load": (f"kferry bundle load kubeflow.tar.zst --to {REG} --ca-file harbor-ca.pem",),
    "bundle verify": ("kferry bundle verify kubeflow.tar.zst -o json",),
    "login": (
        "kferry login harbor.local:8443 --username robot --password-stdin < robot.txt",
        "kferry login quay.io --username me --authfile auth.json",
        "kferry login harbor.local:8443 -u robot --password-stdin --cert-dir certs.d < pw",
    ),
    "logout": ("kferry logout harbor.local:8443", "kferry logout quay.io --authfile auth.json"),
    "catalog": ("kferry catalog", "kferry catalog -o yaml", "kferry catalog --catalog site.yaml"),
    "catalog check": (
        "kferry catalog check RENDER.yaml",
        "kferry catalog check RENDER.yaml -o json",
    ),
    "completion": (
        'eval "$(kferry completion bash)"          # in ~/.bashrc',
        "kferry completion fish > ~/.config/fish/completions/kferry.fish",
    ),
    "doctor": (
        f"kferry doctor --registry {REG}",
        "kferry doctor --context prod -o json",
    ),
    "help": ("kferry help exit-codes",),
    "images": (
        "kferry images RENDER.yaml",
        "kferry images --why RENDER.yaml",
        "kustomize build example | kferry images -o list -",
        "kferry images --diff kubeflow-v1.9.1.yaml.gz kubeflow-26.03.yaml.gz -o yaml",
    ),
    "mirror": (
        f"kferry mirror --from RENDER.yaml --to {REG} --ca-file harbor-ca.pem \\\n"
        "      --username robot --password-stdin < robot.txt",
        f"kferry images -o list RENDER.yaml | kferry mirror -f - --to {REG}",
        f"kferry mirror -f images.txt --to {REG} --shard 0/3 --lock shard-0.json",
    ),
    "lock": ("kferry lock merge shard-0.json shard-1.json shard-2.json -o kferry.lock.json",),
    "lock merge": ("kferry lock merge shard-*.json -o kferry.lock.json",),
    "mirror-config": (
        f"kferry mirror-config --from RENDER.yaml --to {REG} -o certs.d",
        f"kferry mirror-config --from RENDER.yaml --to {REG} --format crio -o registries.conf",
    ),
    "notebook": (
        "kferry notebook build BASE --wheels wheels/ --to harbor.local/team/jupyter-team:1",
        "kferry notebook add harbor.local/team/jupyter-team:1",
        "kferry notebook list",
    ),
    "notebook build": (
        f"kferry notebook build {REG}/jupyter-scipy:v1.10.0 --wheels wheels/ \\\n"
        "      --to harbor.local:8443/team/jupyter-team:1 --ca-file harbor-ca.pem",
    ),
    "notebook add": (
        "kferry notebook add harbor.local:8443/team/jupyter-team:1",
        "kferry notebook add harbor.local:8443/team/vscode-team:1 --group vscode",
    ),
    "notebook remove": ("kferry notebook remove harbor.local:8443/team/jupyter-team:1",),
    "notebook list": ("kferry notebook list", "kferry notebook list --json"),
    "plan": (
        f"kferry plan --from RENDER.yaml --to {REG}",
        f"kferry plan --from RENDER.yaml --to {REG} -o yaml",
    ),
    "report": (
        "kferry report RENDER.yaml -o report.html",
        f"kferry report RENDER.yaml --platform linux/amd64 --registry {REG} -o report.html",
        "kferry report RENDER.yaml -o md > ticket.md",
    ),
    "rewrite": (
        f"kferry rewrite RENDER.yaml --to {REG} -o private.yaml",
        f"kferry rewrite RENDER.yaml --to {REG} --lock kferry.lock.json --pin-digests",
    ),
    "status": (
        "kferry status -A",
        "kferry status my-model -n team --wait --timeout 10m",
        "kubectl get isvc -A -o json | kferry status -f -",
    ),
    "users": (
        "kferry users add alice@example.com --password-stdin < password.txt",
        "kferry users list -o yaml",
    ),
    "users add": ("kferry users add alice@example.com --password-stdin < password.txt",),
    "users list": ("kferry users list", "kferry users list -o json"),
    "users remove": ("kferry users remove alice@example.com",),
    "users check": (
        "kferry users check alice@example.com --url https://kubeflow.local --password-stdin",
    ),
    "wheels": (
        "kferry wheels save -r requirements.txt --python 3.11 --platform linux/amd64 -o wheels/",
        "kferry wheels check wheels/",
    ),
    "wheels save": (
        "kferry wheels save -r requirements.txt --python 3.11 --platform linux/amd64 \\\n"
        "      --glibc 2.35 -o wheels/",
    ),
    "wheels check": ("kferry wheels check wheels/",),
}


def text(path: str) -> str:
    """The Examples part for a command path ("bundle save"; "" is kferry itself), in click's
    no-rewrap form."""
    lines = "\n".join(f"  {e}" for e in EXAMPLES[path])
    return f"\b\nExamples:\n{lines}"


def attach(command: click.Command, path: str) -> None:
    """Put the Examples part on ``command`` and its subcommands (once; before any epilog)."""
    if path in EXAMPLES and not getattr(command, "_kferry_examples", False):
        part = text(path)
        command.epilog = f"{part}\n\n{command.epilog}" if command.epilog else part
        command._kferry_examples = True  # type: ignore[attr-defined]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            attach(sub, f"{path} {name}".strip())
