"""The super-resolution network and its training on (synthesized LQ, HR) pairs."""
