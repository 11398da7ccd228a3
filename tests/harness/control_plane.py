"""A real, local Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager.

The binaries are built from the Go module proxy by ``tests/cluster/build.sh`` (``make
cluster-binaries``) and cached under ``~/.cache/claimops/bin/``. Everything listens on
127.0.0.1 ports chosen free at start. RBAC, Pod Security admission and the ServiceAccount
admission plugin are on, as in a real cluster. No scheduler or kubelet runs: pods stay
Pending unless :mod:`tests.harness.node_standin` plays the node for them.

Use it from pytest (``tests/conftest.py``) or from the command line::

    python -m tests.harness.control_plane up      # start in the background, print KUBECONFIG
    python -m tests.harness.control_plane down    # stop it and remove its state
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO_ROOT / "tests" / "cluster"
BUILD_COMMAND = "make cluster-binaries"
DEFAULT_STATE_DIR = (
    Path(os.environ.get("CLAIMOPS_CACHE", Path.home() / ".cache" / "claimops")) / "run" / "cluster"
)
SERVICE_CIDR = "10.0.0.0/24"
PR_SET_PDEATHSIG = 1


class KubectlError(subprocess.CalledProcessError):
    """A kubectl command failed; the message includes what kubectl said."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {str(self.stdout)[-2000:]}"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (missing binary, a component died, timeout)."""


def cache_dir() -> Path:
    return Path(os.environ.get("CLAIMOPS_CACHE", Path.home() / ".cache" / "claimops"))


def pinned_versions() -> dict[str, str]:
    """The versions in tests/cluster/versions.env (the build's cache key)."""
    versions: dict[str, str] = {}
    for line in (CLUSTER_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value
    return versions


def binary(name: str) -> Path:
    """Path of a cached control-plane binary; says how to build it when it is missing."""
    v = pinned_versions()
    component = {
        "etcd": f"etcd-{v['ETCD_VERSION']}",
        "kube-apiserver": f"kube-{v['KUBERNETES_VERSION']}",
        "kube-controller-manager": f"kube-{v['KUBERNETES_VERSION']}",
        "kubectl": f"kube-{v['KUBERNETES_VERSION']}",
        "helm": f"helm-{v['HELM_VERSION']}",
    }[name]
    path = cache_dir() / "bin" / component / name
    if not os.access(path, os.X_OK):
        raise ControlPlaneError(f"{name} is not built: {path} is missing. Build it with `{BUILD_COMMAND}`.")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates ------------------------------------------------------------------------


@dataclass
class _KeyPair:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )


def _name(common_name: str, *organizations: str) -> x509.Name:
    """CN = the user, one O per group: how the API server reads a client certificate."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name(attrs)


def _issue(
    subject: x509.Name,
    issuer: _KeyPair | None,
    *,
    ca: bool = False,
    server_names: Sequence[str] = (),
    server_ips: Sequence[str] = (),
    client: bool = False,
) -> _KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usages = ([x509.ExtendedKeyUsageOID.SERVER_AUTH] if server_names or server_ips else []) + (
            [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names or server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer.key if issuer else key
    return _KeyPair(builder.sign(signer, hashes.SHA256()), key)


@dataclass
class _Pki:
    ca: _KeyPair
    apiserver: _KeyPair
    admin: _KeyPair
    controller_manager: _KeyPair
    service_accounts: rsa.RSAPrivateKey

    @classmethod
    def create(cls) -> _Pki:
        ca = _issue(_name("claimops-test-ca"), None, ca=True)
        service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
        apiserver = _issue(
            _name("kube-apiserver"),
            ca,
            server_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            server_ips=["127.0.0.1", service_ip],
        )
        admin = _issue(_name("claimops-admin", "system:masters"), ca, client=True)
        kcm = _issue(_name("system:kube-controller-manager"), ca, client=True)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(ca, apiserver, admin, kcm, sa_key)

    def write(self, pki_dir: Path) -> None:
        pki_dir.mkdir(parents=True, exist_ok=True)
        files = {
            "ca.crt": self.ca.cert_pem(),
            "ca.key": self.ca.key_pem(),
            "apiserver.crt": self.apiserver.cert_pem(),
            "apiserver.key": self.apiserver.key_pem(),
            "sa.key": self.service_accounts.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
            "sa.pub": self.service_accounts.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for name, data in files.items():
            path = pki_dir / name
            path.write_bytes(data)
            path.chmod(0o600)


def _kubeconfig(server: str, ca: _KeyPair, user: str, client: _KeyPair) -> str:
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "claimops-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca.cert_pem())},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem()),
                    "client-key-data": b64(client.key_pem()),
                },
            }
        ],
        "contexts": [{"name": "claimops-test", "context": {"cluster": "claimops-test", "user": user}}],
        "current-context": "claimops-test",
    }
    return json.dumps(config, indent=2)


# --- processes ---------------------------------------------------------------------------


def die_with_parent() -> None:
    """Ask the kernel to kill a child when the test process dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ControlPlaneError(
                f"{self.name} exited with code {self.process.returncode}; last log lines:\n{self.log_tail()}"
            )


def stop_process_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process group, then SIGKILL what is left after `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@dataclass
class ControlPlane:
    """One running control plane. Create with :meth:`start`; always :meth:`stop`."""

    workdir: Path
    owned_by_caller: bool = True
    etcd_port: int = 0
    apiserver_port: int = 0
    controller_manager_port: int = 0
    components: list[_Component] = field(default_factory=list)
    seconds_to_ready: float = 0.0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    # -- lifecycle --

    @classmethod
    def start(
        cls, workdir: Path | None = None, *, owned_by_caller: bool = True, timeout: float = 300
    ) -> ControlPlane:
        """Start etcd, kube-apiserver and kube-controller-manager and wait until ready.

        About 10 s on an idle machine; `timeout` is generous because CI builds images beside
        the tests, and a slow start is better than every cluster test failing.

        `owned_by_caller` ties the processes' lives to this Python process (tests); the
        command-line `up` detaches them instead.
        """
        binaries = {n: binary(n) for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")}
        workdir = workdir or Path(tempfile.mkdtemp(prefix="claimops-cp-"))
        workdir.mkdir(parents=True, exist_ok=True)
        plane = cls(workdir=workdir, owned_by_caller=owned_by_caller)
        started = time.monotonic()
        try:
            plane._start(binaries, timeout)
        except BaseException:
            plane.stop()
            raise
        plane.seconds_to_ready = time.monotonic() - started
        return plane

    def _spawn(self, name: str, argv: Sequence[str]) -> _Component:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so stop() reaches every child
                preexec_fn=die_with_parent if self.owned_by_caller else None,
                cwd=self.workdir,
            )
        component = _Component(name, process, log)
        self.components.append(component)
        return component

    def _start(self, binaries: dict[str, Path], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pki = _Pki.create()
        pki.write(self.pki_dir)
        self.etcd_port, self.apiserver_port, self.controller_manager_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.kubeconfig.write_text(_kubeconfig(self.server, pki.ca, "claimops-admin", pki.admin))
        kcm_kubeconfig = self.workdir / "controller-manager.kubeconfig"
        kcm_kubeconfig.write_text(
            _kubeconfig(self.server, pki.ca, "system:kube-controller-manager", pki.controller_manager)
        )
        for path in (self.kubeconfig, kcm_kubeconfig):
            path.chmod(0o600)

        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                "--listen-peer-urls=http://127.0.0.1:0",
                "--unsafe-no-fsync",  # test data only: durability costs seconds per test on slow disks
                "--log-level=warn",
            ],
        )
        self._wait(etcd, deadline, lambda: None if http_ok(f"{etcd_url}/health") else "etcd /health not OK")

        pki_dir = self.pki_dir
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={pki_dir}",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                f"--secure-port={self.apiserver_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",  # as on real clusters: Pod Security admission decides
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki_dir / 'sa.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity",
                # MutatingAdmissionPolicy (beta in v1.34, off by default) records who decided
                # on a PipelineRun; manifests/kind-config.yaml turns on the same on kind.
                "--feature-gates=MutatingAdmissionPolicy=true",
                "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait(apiserver, deadline, self._apiserver_readiness)

        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(binaries["kube-controller-manager"]),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki_dir / 'sa.key'}",
                f"--root-ca-file={pki_dir / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
                f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
                f"--secure-port={self.controller_manager_port}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--profiling=false",
                "--v=1",
            ],
        )
        # The ServiceAccount admission plugin refuses pods until the `default` ServiceAccount
        # exists, which only the controller manager creates: that is the readiness that matters.
        self._wait(kcm, deadline, self._default_service_account_readiness)

    def _wait(self, component: _Component, deadline: float, ready: Callable[[], str | None]) -> None:
        """Poll `ready` (None when ready, else what it saw) until `deadline`."""
        while True:
            component.check_alive()
            seen = ready()
            if seen is None:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{component.name} was not ready in time; last probe: {seen}\n"
                    f"last lines of {component.log}:\n{component.log_tail()}"
                )
            time.sleep(0.1)

    def _probe(self, *args: str) -> str | None:
        """Run kubectl as a readiness probe: None when it succeeds, else what went wrong.

        A probe that hangs is "not yet", not an error: an API server that has just opened its
        port on a loaded machine (CI builds images beside the tests) can hold a request for
        seconds, and the deadline in `_wait` bounds the whole wait anyway."""
        try:
            result = self.kubectl(*args, "--request-timeout=5s", check=False, timeout=15)
        except subprocess.TimeoutExpired:
            return f"kubectl {' '.join(args)} did not answer within 15 s"
        if result.returncode == 0:
            return None
        return f"kubectl {' '.join(args)}: {result.stderr.strip()[-500:]}"

    def _apiserver_readiness(self) -> str | None:
        return self._probe("get", "--raw=/readyz")

    def _default_service_account_readiness(self) -> str | None:
        return self._probe("get", "serviceaccount", "default", "-n", "default")

    def stop(self) -> None:
        """Stop every component (process groups, newest first) and wait for them to exit."""
        for component in reversed(self.components):
            stop_process_group(component.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=5)
        self.components.clear()

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- clients --

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float | None = None,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane (text in, text out), as cluster
        admin or as the user of `kubeconfig` (:meth:`user_kubeconfig`).

        Without `timeout`, a `--timeout=` argument (kubectl wait) plus a margin bounds the call,
        else 60 s."""
        if timeout is None:
            timeout = 60.0
            for arg in args:
                if arg.startswith("--timeout=") and arg[-1] in "sm" and arg[10:-1].isdigit():
                    timeout = int(arg[10:-1]) * (60 if arg[-1] == "m" else 1) + 30.0
        result = subprocess.run(
            [str(binary("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for a real user: a client certificate signed by the cluster CA with
        CN=`user` and O=each of `groups`, which the API server authenticates as that user in
        those groups (no impersonation involved)."""
        ca = _KeyPair(
            x509.load_pem_x509_certificate((self.pki_dir / "ca.crt").read_bytes()),
            cast(
                rsa.RSAPrivateKey,
                serialization.load_pem_private_key((self.pki_dir / "ca.key").read_bytes(), password=None),
            ),
        )
        path = self.workdir / f"user-{user}.kubeconfig"
        path.write_text(_kubeconfig(self.server, ca, user, _issue(_name(user, *groups), ca, client=True)))
        path.chmod(0o600)
        return path

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this control plane."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` authenticated as cluster admin."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)

    # -- state for the command line --

    def save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "pids": {c.name: c.process.pid for c in self.components},
        }
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2))


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether `url` answers 200 (a readiness check)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_control_plane(workdir: Path | None = None) -> Iterator[ControlPlane]:
    plane = ControlPlane.start(workdir)
    try:
        yield plane
    finally:
        plane.stop()
        plane.remove()


# --- command line ------------------------------------------------------------------------


def _up(state_dir: Path) -> int:
    if (state_dir / "state.json").exists():
        print(
            f"a control plane is already recorded in {state_dir}; run `make cluster-down` first",
            file=sys.stderr,
        )
        return 1
    if state_dir.exists():
        shutil.rmtree(state_dir)
    plane = ControlPlane.start(state_dir, owned_by_caller=False)
    plane.save_state()
    print(f"control plane ready in {plane.seconds_to_ready:.1f} s at {plane.server}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _down(state_dir: Path) -> int:
    state_file = state_dir / "state.json"
    if not state_file.exists():
        print("no control plane is running")
        return 0
    state = json.loads(state_file.read_text())
    for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
        pid = state["pids"].get(name)
        if pid:
            stop_process_group(int(pid))
    shutil.rmtree(state_dir, ignore_errors=True)
    print("control plane stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.control_plane", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_STATE_DIR, help="state directory")
    args = parser.parse_args(argv)
    try:
        return _up(args.dir) if args.command == "up" else _down(args.dir)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
