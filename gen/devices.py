"""The devices --device names: auto, cpu, cuda and mps.

One list, without torch: the CLI offers it as --device's choices when it starts, before (and
without) importing torch; gen.runtime.resolve_device turns a name into a torch device.
"""

DEVICES = ("auto", "cpu", "cuda", "mps")
