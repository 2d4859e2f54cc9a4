"""Distillation from a trained nerfstudio model (the teacher) into a student method (issue 12).

- :mod:`.teacher`: load a trained model from its ``config.yml`` (frozen) and render it on rays.
- :mod:`.poses`: novel camera poses around the training cameras (sphere shell or forward-facing jitter).
- :mod:`.datamanager`: ``TeacherDataManager``, ray batches from real and novel cameras with teacher targets.
- :mod:`.pseudo_images`: ``PseudoImageCache``, whole teacher images at novel poses, cached on disk.

Import the submodules directly; this package imports nothing heavy itself.
"""
