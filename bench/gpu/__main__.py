"""``python -m bench.gpu``: a child process of the GPU section (``bench.gpu.child``)."""

from bench.gpu.child import main

if __name__ == "__main__":
    main()
