"""Custom notebook images: built onto a base without Docker, offered in the Jupyter spawner."""
