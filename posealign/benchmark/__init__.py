"""The built-in benchmarks: procedurally drawn articulated figures in two domains, no downloads.

Two body plans share one generator (``body_plans``):

- ``human`` (task ``benchmark``): Body16 figures facing the camera;
- ``quadruped`` (task ``benchmark_quadruped``): side views of four-legged animals in the Animal14
  layout (eyes, elbows, knees, hooves); the far eye, usually hidden by the head, stays labeled.
- ``hand`` (task ``benchmark_hand``): hands in the Hand21 layout (wrist, then each finger's MCP, PIP,
  DIP and tip), posed in 3D with flexed and spread fingers, palm or back towards the camera.

``source`` is clean renders: flat saturated body parts on a plain background, moderate poses.
``target`` is what makes real photos hard for a model trained on renders: natural textured parts
(clothing and skin, or fur coats) with shading, uneven lighting, cluttered backgrounds with limb-like
distractor strokes, blur, sensor noise and JPEG, self-occlusion, and a shifted pose distribution
(human: raised and crossed arms, wide stances; quadruped: 3/4 views, other leg lengths, faster gaits,
grazing, sitting and lying; hand: fists, pointing and pinching, hands turned further out of the
image plane; all: in-plane rotation, other scales). Part of the gap is appearance
statistics (what AdaIN-style image alignment can close), part is clutter and pose shift. Every knob
is a field of a style: :class:`~posealign.benchmark.domains.DomainStyle` for the shared ones,
``HumanStyle``, ``QuadrupedStyle`` and ``HandStyle`` add each body's pose knobs.

Layout written by :func:`~posealign.benchmark.generate.generate_benchmark` (loadable with
``load_coco(root, split, keypoint_set="body16", "animal14" or "hand21", crop="image")``)::

    root/images/{source_train,source_test,target_train,target_test,target_val}/{index:06d}.png
    root/annotations/{split}.json      COCO keypoints, visibility 2 = labeled, 0 = outside the image
    root/benchmark.json                generator version and parameters, written last

``target_train`` is the unlabeled target data of adaptation (its labels serve only the oracle),
``target_test`` gives the reported number, and ``target_val`` (more images of the target domain)
is for choosing settings: it is evaluated beside ``target_test`` and never reported.

Conventions: image coordinates (x right, y down) with pixel centres at integers, so a keypoint is
inside the image when ``0 <= x, y <= image_size - 1``. A keypoint hidden behind another body part
stays labeled (visibility 2), as in LSP; only keypoints outside the image get visibility 0.

One image is drawn in this order, one module each:

- ``domains`` (shared knobs, the human's domains), ``quadruped_domains`` and ``hand_domains``: each
  domain's knobs;
- ``body_plans``: which figure is drawn: its keypoint set, its domains, its drawing function;
- ``human_pose`` / ``quadruped_pose`` / ``hand_pose``: a skeleton from the domain's pose distribution;
  ``placement``: rotated, scaled and shifted into the image;
- ``human_figure`` / ``quadruped_figure`` / ``hand_figure`` and ``clutter``: the figure's capsules with colours and
  textures (``capsules``, ``colors``), and what is not the figure;
- ``background``: plain or textured; ``scene``: all of the above for one image;
- ``rasterize``: every capsule, anti-aliased, composited in depth order;
- ``camera``: blur, lighting, noise, tone curve, JPEG; ``render``: scene -> pixels, nothing written;
- ``coco_writer`` and ``generate``: PNGs, COCO annotations and ``benchmark.json`` on disk;
- ``task``: generate the benchmark a config names where it expects it.
"""
