"""The default seccomp profile: docker's rules, written in docker's JSON profile format.

Containers may make the system calls ordinary programs need and no others: not those
that load kernel modules, reboot, change the clock, mount, create namespaces (`unshare`,
`setns`, `clone` with a namespace flag), use the kernel keyring, bpf, perf or userfaultfd,
or open AF_ALG and AF_VSOCK sockets. Anything not allowed fails with EPERM. Calls
that a capability makes legitimate (`chroot` with CAP_SYS_CHROOT, `ptrace` with
CAP_SYS_PTRACE, ...) are allowed only when the container holds it; with docker's default
capabilities that is `chroot` alone. `clone3` answers ENOSYS, so that libc falls back
to `clone`, whose flags can be checked.

Kept in the same format as a `--security-opt seccomp=FILE` profile so that one loader
(`seccomp.py`) reads both; docker's own profile loads there unchanged.
"""

from __future__ import annotations

from typing import Any

_FILES = """
    access chdir chmod chown chown32 close close_range copy_file_range creat dup dup2 dup3
    faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat
    fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock
    fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64
    futimesat getcwd getdents getdents64 getxattr getxattrat inotify_add_watch inotify_init
    inotify_init1 inotify_rm_watch lchown lchown32 lgetxattr link linkat listmount listxattr
    listxattrat llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 mkdir mkdirat mknod
    mknodat name_to_handle_at newfstatat open openat openat2 pread64 preadv preadv2 pwrite64
    pwritev pwritev2 read readahead readlink readlinkat readv removexattr removexattrat rename
    renameat renameat2 rmdir sendfile sendfile64 setxattr setxattrat splice stat stat64 statfs
    statfs64 statmount statx symlink symlinkat sync sync_file_range syncfs tee truncate truncate64
    umask unlink unlinkat utime utimensat utimensat_time64 utimes vmsplice write writev cachestat
"""
_EVENTS = """
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
    epoll_wait_old eventfd eventfd2 io_cancel io_destroy io_getevents io_pgetevents
    io_pgetevents_time64 io_setup io_submit ioctl pipe pipe2 poll ppoll ppoll_time64 pselect6
    pselect6_time64 select _newselect signalfd signalfd4 timerfd_create timerfd_gettime
    timerfd_gettime64 timerfd_settime timerfd_settime64
"""
_PROCESSES = """
    capget capset execve execveat exit exit_group fork get_robust_list get_thread_area getcpu
    getpgid getpgrp getpid getppid getpriority getrlimit getrusage getsid gettid ioprio_get
    ioprio_set kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
    map_shadow_stack pidfd_open pidfd_send_signal prctl prlimit64 process_mrelease
    restart_syscall riscv_hwprobe rseq seccomp set_robust_list set_thread_area set_tid_address
    setpgid setpriority setrlimit setsid sysinfo tgkill times tkill ugetrlimit uname uretprobe
    vfork wait4 waitid waitpid
"""
_IDENTITY = """
    getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getresgid
    getresgid32 getresuid getresuid32 getuid getuid32 setfsgid setfsgid32 setfsuid setfsuid32
    setgid setgid32 setgroups setgroups32 setregid setregid32 setresgid setresgid32 setresuid
    setresuid32 setreuid setreuid32 setuid setuid32
"""
_SCHEDULING = """
    sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
    sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
    sched_setattr sched_setparam sched_setscheduler sched_yield
"""
_MEMORY = """
    brk madvise membarrier memfd_create memfd_secret mincore mlock mlock2 mlockall mmap mmap2
    mprotect mremap mseal msync munlock munlockall munmap pkey_alloc pkey_free pkey_mprotect
    remap_file_pages
"""
_SIGNALS_AND_TIME = """
    adjtimex alarm clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 getitimer gettimeofday nanosleep pause
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
    rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo setitimer sigaltstack sigprocmask
    sigreturn time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
    timer_settime timer_settime64
"""
_IPC = """
    futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake getrandom ipc mq_getsetattr
    mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
    mq_unlink msgctl msgget msgrcv msgsnd semctl semget semop semtimedop semtimedop_time64 shmat
    shmctl shmdt shmget
"""
_SOCKETS = """
    accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom recvmmsg
    recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto setsockopt shutdown socketcall socketpair
"""
ALLOWED = sorted(
    " ".join((_FILES, _EVENTS, _PROCESSES, _IDENTITY, _SCHEDULING, _MEMORY, _SIGNALS_AND_TIME, _IPC, _SOCKETS)).split()
)

_AF_ALG, _AF_NFC, _AF_VSOCK = 38, 39, 40
_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
# personality(2) values a program may set: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE (both), and the query.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_ENOSYS = 38

# Calls a capability makes legitimate, allowed only to containers that hold it.
_BY_CAPABILITY = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie
        lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount open_tree
        perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare""",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}
# Calls only some architectures have (keys are Go's architecture names, as docker's profiles use).
_BY_ARCHITECTURE = {
    ("ppc64le",): "sync_file_range2 swapcontext",
    ("arm", "arm64"): "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ("amd64", "x32"): "arch_prctl",
    ("amd64", "x32", "x86"): "modify_ldt",
    ("s390", "s390x"): "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    ("riscv64",): "riscv_flush_icache",
}
_SUBARCHITECTURES = {
    "SCMP_ARCH_X86_64": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "SCMP_ARCH_AARCH64": ["SCMP_ARCH_ARM"],
    "SCMP_ARCH_S390X": ["SCMP_ARCH_S390"],
    "SCMP_ARCH_RISCV64": [],
}


def _allow(names: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"names": names.split() if isinstance(names, str) else names, "action": "SCMP_ACT_ALLOW", **extra}


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "op": op, "value": value, "valueTwo": value_two}


def default_profile() -> dict[str, Any]:
    """docker's default profile, as a document in its JSON format."""
    syscalls = [
        _allow(ALLOWED),
        _allow("process_vm_readv process_vm_writev ptrace", includes={"minKernel": "4.8"}),
        # socket(2) for every address family but AF_ALG and AF_VSOCK.
        _allow("socket", args=[_arg(0, "SCMP_CMP_LT", _AF_ALG)]),
        _allow("socket", args=[_arg(0, "SCMP_CMP_EQ", _AF_NFC)]),
        _allow("socket", args=[_arg(0, "SCMP_CMP_GT", _AF_VSOCK)]),
        *(_allow("personality", args=[_arg(0, "SCMP_CMP_EQ", value)]) for value in _PERSONALITIES),
        *(_allow(names, includes={"arches": list(arches)}) for arches, names in _BY_ARCHITECTURE.items()),
        *(_allow(names, includes={"caps": [cap]}) for cap, names in _BY_CAPABILITY.items()),
        # clone(2) without namespace flags (the flags are the second argument on s390).
        _allow(
            "clone",
            args=[_arg(0, "SCMP_CMP_MASKED_EQ", _NAMESPACE_FLAGS)],
            excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]},
        ),
        _allow(
            "clone",
            args=[_arg(1, "SCMP_CMP_MASKED_EQ", _NAMESPACE_FLAGS)],
            includes={"arches": ["s390", "s390x"]},
            excludes={"caps": ["CAP_SYS_ADMIN"]},
        ),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": arch, "subArchitectures": subs} for arch, subs in _SUBARCHITECTURES.items()],
        "syscalls": syscalls,
    }
