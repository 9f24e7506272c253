"""gpudoctor: environment doctor, memory planner and QLoRA launcher for one workstation.

Layers (imports point down only): cli → train/install/data → plan → doctor → probe → profiles.
Nothing imported here may pull in torch or transformers.
"""

__version__ = "0.1.0"
