"""Example programs shipped with the package (``picaco compile --program assistant``); the repository's top-level
``programs/`` folder holds identical copies to read."""
