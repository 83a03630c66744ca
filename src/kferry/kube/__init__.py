"""Cluster access shared by apply and the day-2 commands: connection, discovery, objects."""

from kferry.kube.client import Kube, KubeError
from kferry.kube.discovery import Discovery, Resource

__all__ = ["Discovery", "Kube", "KubeError", "Resource"]
