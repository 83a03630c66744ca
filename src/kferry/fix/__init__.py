"""Fix stage: the pack of named, versioned fixes the field report learned the hard way.

Each fix is described in ``catalog/data/fixes.yaml`` (what, why, upstream source) and applied
here as text edits, only where the manifests hold what it fixes; each change is reported
with the object it touched.
"""

from kferry.fix.engine import FIX_NAMES, FixChange, FixResult, apply_fixes, enabled_fixes

__all__ = ["FIX_NAMES", "FixChange", "FixResult", "apply_fixes", "enabled_fixes"]
