"""Example DSPy programs to align with PICACO, and experiment scripts. Each program is a plain module to copy."""
