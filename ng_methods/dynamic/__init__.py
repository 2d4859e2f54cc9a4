"""Helpers shared by the time-aware (dynamic-scene) methods: reading a camera's capture time.

Time-aware data (``ng-dnerf-data``, ``nonrigid-data``) puts each image's time, normalised to [0, 1], in
``Cameras.times`` (``[N, 1]``). nerfstudio's ``FullImageDatamanager`` slices its cameras per image, so the camera
handed to ``Model.get_outputs`` carries its time in training and evaluation; the viewer sets it from its time
slider (shown when the dataparser has ``includes_time``); ``ns-render spiral`` sweeps it over [0, 1],
``ns-render camera-path`` takes it from each keyframe's ``render_time``, and ``ns-render interpolate`` drops it
(the methods then fall back to a configured default time). See ``docs/dynamic-data.md``.
"""

from ng_methods.dynamic.times import camera_time, camera_times, has_time

__all__ = ["camera_time", "camera_times", "has_time"]
