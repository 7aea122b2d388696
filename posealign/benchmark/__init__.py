"""The built-in benchmark: procedurally drawn articulated human figures (Body16) in two domains.

``source`` is clean renders: flat saturated limbs on a plain background, upright moderate poses.
``target`` is what makes real photos hard for a model trained on renders: clothing- and skin-toned
textured limbs with shading, uneven lighting, cluttered backgrounds with limb-like distractor
strokes, blur, sensor noise and JPEG, arms crossing the torso, and a shifted pose distribution
(raised arms, wide stances, in-plane rotation, other scales). Part of the gap is appearance
statistics (what AdaIN-style image alignment can close), part is clutter and pose shift.
Every knob is a field of :class:`~posealign.benchmark.domains.DomainStyle`.

Layout written by :func:`~posealign.benchmark.generate.generate_benchmark` (loadable with
``load_coco(root, split, keypoint_set="body16", crop="image")``)::

    root/images/{source_train,source_test,target_train,target_test}/{index:06d}.png
    root/annotations/{split}.json      COCO keypoints, visibility 2 = labeled, 0 = outside the image
    root/benchmark.json                generator version and parameters, written last

Conventions: image coordinates (x right, y down) with pixel centres at integers, so a keypoint is
inside the image when ``0 <= x, y <= image_size - 1``. A keypoint hidden behind another body part
stays labeled (visibility 2), as in LSP; only keypoints outside the image get visibility 0.

One image is drawn in this order, one module each:

- ``domains``: the two domains' knobs (:class:`DomainStyle`, ``SOURCE_STYLE``, ``TARGET_STYLE``);
- ``poses``: a Body16 skeleton from the domain's pose distribution, placed in the image;
- ``figure`` and ``clutter``: the figure's capsules with colours and textures, and what is not the figure;
- ``background``: plain or textured; ``scene``: all of the above for one image;
- ``rasterize``: every capsule, anti-aliased, composited in depth order;
- ``camera``: blur, lighting, noise, tone curve, JPEG; ``render``: scene -> pixels, nothing written;
- ``coco_writer`` and ``generate``: PNGs, COCO annotations and ``benchmark.json`` on disk;
- ``task``: generate the benchmark where a config expects it.
"""
