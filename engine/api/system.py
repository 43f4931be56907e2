"""`/_ping`, `/version` and `/info`: what docker's clients ask first, to negotiate and to describe the engine."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from engine.api.http import Request, Response
from engine.api.routes import API_VERSION, MIN_API_VERSION, Router
from engine.cli import VERSION

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


async def ping(request: Request) -> Response:
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
    body = b"" if request.method == "HEAD" else b"OK"
    return Response(200, body, "text/plain; charset=utf-8", headers)


def version_doc() -> dict[str, Any]:
    uname = os.uname()
    arch = GO_ARCH.get(uname.machine, uname.machine)
    return {
        "Platform": {"Name": "Berth Engine"},
        "Components": [
            {
                "Name": "Engine",
                "Version": VERSION,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": MIN_API_VERSION,
                    "Os": "linux",
                    "Arch": arch,
                    "KernelVersion": uname.release,
                    "Experimental": "false",
                    "GitCommit": "",
                    "GoVersion": f"python{platform.python_version()}",
                    "BuildTime": "",
                },
            }
        ],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": uname.release,
        "BuildTime": "",
    }


async def version(request: Request) -> Response:
    return Response.json(version_doc())


def _info() -> dict[str, Any]:
    from engine.service.containers import Status
    from engine.service.lifecycle import stores

    images, containers = stores()
    listed = containers.list()
    running = sum(1 for c in listed if c.status is Status.RUNNING)
    uname = os.uname()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return {
        "ID": "berth",
        "Containers": len(listed),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": len(listed) - running,
        "Images": len(images.names()) if images.paths.images.joinpath("index.json").exists() else 0,
        "Driver": "overlay",
        "DriverStatus": [],
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "null"], "Authorization": None, "Log": []},
        "MemoryLimit": True,
        "SwapLimit": False,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": False,
        "CPUSet": False,
        "PidsLimit": True,
        "IPv4Forwarding": True,
        "BridgeNfIptables": False,
        "BridgeNfIp6tables": False,
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": False,
        "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
        "NEventsListener": 0,
        "KernelVersion": uname.release,
        "OperatingSystem": platform.freedesktop_os_release().get("PRETTY_NAME", "Linux") if _has_os_release() else "",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": uname.machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": memory,
        "GenericResources": None,
        "DockerRootDir": str(images.paths.root),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": uname.nodename,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": VERSION,
        "Runtimes": {"berth": {"path": "berth"}},
        "DefaultRuntime": "berth",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "Warnings": [],
    }


def _has_os_release() -> bool:
    return os.path.exists("/etc/os-release") or os.path.exists("/usr/lib/os-release")


def register(router: Router) -> None:
    async def info(request: Request) -> Response:
        return Response.json(await router.call(_info))

    router.add("GET", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
