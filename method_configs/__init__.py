"""nerfstudio ``MethodSpecification``s of ng-methods, one module per method family.

Entry-point modules must import cleanly without CUDA, Triton or tinycudann: nerfstudio loads every plugin when it
builds its CLI, and one failing import breaks ``ns-train`` for every method.
"""
