"""Memory of this process from /proc/self/status (Linux), for the benchmarks.

VmHWM is the peak resident set of this process's own address space. resource.getrusage's ru_maxrss is not
used: a child started by fork + exec inherits the parent's value, so every child would report at least the
parent's size.
"""


def proc_status_gb(key):
    """A /proc/self/status memory field (VmRSS: now, VmHWM: peak) of this process, in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 2 ** 20
    raise KeyError(key)
