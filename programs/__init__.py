"""Example DSPy programs to align with PICACO. Each is a plain module to copy; `picaco --program NAME` runs them."""
