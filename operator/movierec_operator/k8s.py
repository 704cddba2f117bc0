"""Thin Kubernetes adapter: create-or-patch children, read and patch RecommenderModels, post Events.
One helper (:func:`call`) decides what every API status code means for the operator."""

from __future__ import annotations

import enum
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from movierec_operator import constants
from movierec_operator.status import rfc3339

log = logging.getLogger(__name__)


class Result(enum.Enum):
    OK = "ok"
    NOT_FOUND = "not-found"
    CONFLICT = "conflict"


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def call(fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> tuple[Result, Any]:
    """Run one API call. 404 and 409 are results the caller handles; bad requests stop the
    handler for good; everything else (throttling, outages, missing RBAC) is retried later."""
    try:
        return Result.OK, fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            return Result.NOT_FOUND, None
        if exc.status == 409:
            return Result.CONFLICT, None
        if exc.status in (400, 422):
            raise kopf.PermanentError(
                f"{what}: the API server rejected it: {_message(exc)}"
            ) from exc
        if exc.status in (401, 403):
            raise kopf.TemporaryError(
                f"{what}: {exc.status} {_message(exc)}; check the operator's Role and RoleBinding",
                delay=60,
            ) from exc
        raise kopf.TemporaryError(
            f"{what}: API server answered {exc.status}: {_message(exc)}", delay=10
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise kopf.TemporaryError(f"{what}: API server unreachable: {exc}", delay=10) from exc


def make_api_client(kubeconfig: str | None) -> client.ApiClient:
    """An API client from ``kubeconfig``, else the in-cluster service account, else ~/.kube."""
    if kubeconfig:
        api = config.new_client_from_config(config_file=kubeconfig)
    else:
        try:
            config.load_incluster_config()
            api = client.ApiClient()
        except config.ConfigException:
            api = config.new_client_from_config()
    if not api.configuration.verify_ssl:
        # the kubeconfig asks for insecure-skip-tls-verify: warning on every call adds nothing
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return api


class Kube:
    """The Kubernetes calls the operator makes, nothing else."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.timeout = timeout

    def _verbs(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        if kind == "Deployment":
            return self.apps.create_namespaced_deployment, self.apps.patch_namespaced_deployment
        if kind == "Service":
            return self.core.create_namespaced_service, self.core.patch_namespaced_service
        if kind == "ConfigMap":
            return self.core.create_namespaced_config_map, self.core.patch_namespaced_config_map
        raise ValueError(f"the operator does not manage {kind} objects")

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Create ``obj``, or patch it (strategic merge) when it exists already."""
        kind, meta = obj["kind"], obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        what = f"apply {kind} {namespace}/{name}"
        create, patch = self._verbs(kind)
        opts = {"field_manager": constants.MANAGER, "_request_timeout": self.timeout}
        result, _ = call(create, namespace, obj, what=what, **opts)
        if result == Result.CONFLICT:
            result, _ = call(patch, name, namespace, obj, what=what, **opts)
        if result == Result.NOT_FOUND:
            raise kopf.TemporaryError(f"{what}: object vanished while patching", delay=2)
        if result == Result.CONFLICT:
            raise kopf.TemporaryError(f"{what}: conflicting update, retrying", delay=1)

    def get_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A Deployment or ConfigMap the operator owns, as plain JSON (``None``: not there)."""
        read = {
            "Deployment": self.apps.read_namespaced_deployment,
            "ConfigMap": self.core.read_namespaced_config_map,
        }[kind]
        _, obj = call(
            read, name, namespace, what=f"read {kind} {namespace}/{name}",
            _request_timeout=self.timeout,
        )  # fmt: skip
        return None if obj is None else dict(self.api.sanitize_for_serialization(obj))

    def watch_problem(self, namespace: str | None) -> str | None:
        """Why the operator cannot list (so cannot watch) RecommenderModels in ``namespace``
        (``None``: every namespace); ``None`` when it can."""
        where = f"namespace {namespace!r}" if namespace else "any namespace"
        args = (constants.GROUP, constants.VERSION)
        try:
            if namespace:
                self.custom.list_namespaced_custom_object(
                    *args, namespace, constants.PLURAL, limit=1, _request_timeout=self.timeout
                )
            else:
                self.custom.list_cluster_custom_object(
                    *args, constants.PLURAL, limit=1, _request_timeout=self.timeout
                )
        except ApiException as exc:
            if exc.status in (401, 403):
                return (
                    f"cannot list recommendermodels.{constants.GROUP} in {where}: "
                    f"{exc.status} {_message(exc)}. The operator's ServiceAccount needs the "
                    "Role and a RoleBinding whose subject names the ServiceAccount's namespace "
                    "(the chart installs both in the release namespace)"
                )
            if exc.status == 404:
                return f"the RecommenderModel CRD is not installed: {_message(exc)}"
            return f"listing recommendermodels in {where}: API server answered {exc.status}"
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return f"listing recommendermodels in {where}: API server unreachable: {exc}"
        return None

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The RecommenderModel as the API server has it now (``None`` once deleted)."""
        _, body = call(
            self.custom.get_namespaced_custom_object,
            constants.GROUP,
            constants.VERSION,
            namespace,
            constants.PLURAL,
            name,
            what=f"read RecommenderModel {namespace}/{name}",
            _request_timeout=self.timeout,
        )
        return body

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge ``status`` into the object's status; False when the object is gone."""
        result, _ = call(
            self.custom.patch_namespaced_custom_object_status,
            constants.GROUP,
            constants.VERSION,
            namespace,
            constants.PLURAL,
            name,
            {"status": dict(status)},
            what=f"update status of RecommenderModel {namespace}/{name}",
            _request_timeout=self.timeout,
        )
        if result == Result.CONFLICT:
            raise kopf.TemporaryError("status update conflicted, retrying", delay=1)
        return result == Result.OK

    def event(self, owner: Mapping[str, Any], *, type_: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about ``owner`` (what ``kubectl describe rm`` shows)."""
        meta = owner["metadata"]
        now = rfc3339(time.time())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}"},
            "involvedObject": {
                "apiVersion": owner.get("apiVersion", constants.API_VERSION),
                "kind": owner.get("kind", constants.KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": constants.MANAGER},
            "reportingComponent": constants.MANAGER,
        }
        result, _ = call(
            self.core.create_namespaced_event,
            meta["namespace"],
            body,
            what=f"post Event {reason}",
            _request_timeout=self.timeout,
        )
        if result != Result.OK:
            log.warning("event %s for %s not posted: %s", reason, meta["name"], result.value)


def connection_info(api: client.ApiClient) -> kopf.ConnectionInfo:
    """Kopf's credentials from the same API client the adapter uses (one source of truth)."""
    cfg = api.configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )
