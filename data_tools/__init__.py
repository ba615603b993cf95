"""Data tools: image I/O, MATLAB-style resizing, classical degradations, benchmarks, datasets.

Each tool is a function and a command: ``python -m data_tools.NAME --help``.
"""
