"""Constants more than one stage needs: the course's shape, the default seed, glibc's allocator facts."""

from __future__ import annotations

# The course assignment's own shape: 209 training images of 64 x 64 x 3 pixels.
COURSE_SHAPE = (209, 64 * 64 * 3)
# The data seed of every run that does not name one.
DEFAULT_SEED = 20240917

# glibc's default M_MMAP_THRESHOLD: larger requests are mmapped until the dynamic threshold moves.
DEFAULT_MMAP_THRESHOLD_BYTES = 128 * 2**10
# glibc caps the mmap threshold at 32 MiB on 64-bit (larger values are ignored); the trim
# threshold has no cap. With both raised, freed temporaries stay in the heap, mapped.
KEEP_MAPPED_ENV: tuple[tuple[str, str], ...] = (
    ("MALLOC_MMAP_THRESHOLD_", str(32 * 2**20)),
    ("MALLOC_TRIM_THRESHOLD_", str(2**30)),
)
# A C-order row stride that is a multiple of this maps a column's elements to the same cache sets.
ALIASING_STRIDE_BYTES = 4096
# `bench kernels`: the one-pass read's fastest repetition over its slowest beyond this means the machine
# changed speed while a kernel was timed (on an AMD EPYC Zen 5 VM, a 2-thread whole-row read of a 512 MiB
# X took 6.4-7.2 ms in some stretches and 10.3 in others, and fully_vectorized's 2-thread step 16 and 22),
# so figures that mix blocks from both stretches (the roof share above all: a ratio of medians) are flagged.
STEADY_MEMORY = 1.2
