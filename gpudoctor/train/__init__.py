"""The QLoRA launcher: data → tokens → packed rows → NF4 model + LoRA → Trainer → run folder.

The only layer that imports torch/transformers/peft/bitsandbytes, and only inside the functions
that train or generate, so `gpudoctor train --help` stays light.
"""
