"""Quality metrics for synthetic images; each metric in its own module, nothing heavy imported here.

- ``frechet``: Gaussian statistics of features and the Fréchet distance (pytorch-fid's).
- ``inception``: pytorch-fid's FID Inception (pool3, 2048 dims) from a local weights file.
- ``domain``: a small CNN trained on the real classes: domain features and class probabilities.
- ``kid``: Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel, subsets).
- ``normalised``: FID and KID on features z-scored with the real training images' statistics.
- ``inception_score``: Inception Score from class probabilities.
- ``histogram``: per-class colour-histogram KL divergence, real against synthetic, and figures.
- ``utility``: one classifier trained on real, synthetic, and both, tested on held-out real images.
- ``near_copies``: the share of synthetic images closer to a training image than unseen real ones.
- ``two_sample``: a classifier two-sample test, real against synthetic: ROC AUC per class.
- ``gradcam``: Grad-CAM maps (captum) of a classifier over real and synthetic images, compared.

Every function takes the project's images: uint8 tensors (N, 3, 64, 64) with int64 labels (N,).
"""
