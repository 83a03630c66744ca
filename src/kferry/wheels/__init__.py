"""Wheels for the notebook's Python and platform: resolved by pip, locked, checked offline."""
