"""How ``deploy --plan`` is found: the steps of ``deploy`` (``deployer.py``), in its order, each
asked what it would do with read calls only (Get*, List*, Describe*, Head*).

Each step reuses deploy's own reads and comparisons (``bucket_steps``, ``existing_role`` and
``current_policy``, ``wanted_secret_policy``, ``function_settings`` and ``config_drift``...),
so a plan made right after a deploy lists nothing to change. Names known only once a
resource exists (a new role's unique id, a new secret's ARN suffix, a new layer's version)
are ``<...>`` placeholders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from lambdamr.aws_errors import error_code, translate
from lambdamr.backends.aws.function import ENV_SIGNING_KEY, DeployedRuntime, alias_name, lambda_timeout
from lambdamr.backends.aws.grants import ENV_GRANTS
from lambdamr.backends.aws.versions import max_event_age
from lambdamr.deploy.at_rest import AtRest, at_rest
from lambdamr.deploy.bucket import bucket_steps, tls_only_policy
from lambdamr.deploy.contents import bucket_size, human_size
from lambdamr.deploy.deployer import AwsClients, default_bucket, deploy_options
from lambdamr.deploy.function import (
    LAYER_DESCRIPTION,
    alias_timeout,
    config_drift,
    find_layer,
    function_settings,
    log_group_is_ours,
)
from lambdamr.deploy.grants import deployed_variables, deployment_grants
from lambdamr.deploy.iam import TRUST_POLICY, checked_runtime_policy, current_policy, existing_role
from lambdamr.deploy.layer import layer_packages, layer_spec_hash
from lambdamr.deploy.options import LOG_RETENTION_DAYS, DeployOptions, partition_of
from lambdamr.deploy.package import code_sha256, function_package
from lambdamr.deploy.plan import DeployPlan, PlannedStep, imperative
from lambdamr.deploy.secret import (
    SecretRef,
    current_key_version,
    describe_secret,
    is_ours,
    secret_policy_change,
    wanted_secret_policy,
)
from lambdamr.errors import LambdaMRError, ResourceNotOursError

#: the fields of a published version that must match $LATEST for its alias to be kept (ensure_alias)
_ALIAS_FIELDS = ("code_sha256", "layers", "lambdamr_version", "signing_key", "signing_key_version", "storage_url")


def plan_deploy(
    region: str | None = None,
    bucket: str | None = None,
    function_name: str = "lambdamr-runtime",
    memory_mb: int = 1024,
    timeout_s: int = 300,
    architecture: str = "x86_64",
    python_version: str | None = None,
    packages: Iterable[str] = (),
    *,
    prefix: str = "lambdamr",
    endpoint_url: str | None = None,
    lambda_endpoint_url: str | None = None,
    require_tls: bool = True,
    reads: Iterable[str] = (),
    writes: Iterable[str] = (),
    revoke: Iterable[str] = (),
    session: Any = None,
) -> DeployPlan:
    """What ``deploy`` with the same arguments would create or change; changes nothing.

    Raises:
        ConfigurationError: what ``deploy`` would refuse (bad options, a name taken by
            something lambdamr did not create, no credentials...).
    """
    options = deploy_options(
        region=region,
        bucket=bucket,
        function_name=function_name,
        memory_mb=memory_mb,
        timeout_s=timeout_s,
        architecture=architecture,
        python_version=python_version,
        packages=packages,
        prefix=prefix,
        endpoint_url=endpoint_url,
        lambda_endpoint_url=lambda_endpoint_url,
        require_tls=require_tls,
        reads=tuple(reads),
        writes=tuple(writes),
        revoke=tuple(revoke),
    )
    options.lambda_runtime  # noqa: B018 - refuses a Python Lambda does not offer, before any AWS call
    clients = AwsClients.create(options, session)
    try:
        return _Planner(clients, options).plan()
    except LambdaMRError:
        raise
    except Exception as exc:
        raise translate(exc, "deploy", "planning the deployment", region=clients.region) from exc


class _Planner:
    """The steps of ``deploy``, each asked what it would do."""

    def __init__(self, clients: AwsClients, options: DeployOptions) -> None:
        self.clients = clients
        self.options = options
        self.partition = partition_of(clients.region)
        self._new_secret = False  # set by _secret: no secret yet
        self._secret_deleted = False  # set by _secret: teardown scheduled its deletion
        self._log_bytes = 0  # set by _log_group: what the log group stores now

    def plan(self) -> DeployPlan:
        c, o = self.clients, self.options
        caller = c.sts.get_caller_identity()
        account = str(caller["Account"])
        name = o.bucket or default_bucket(c)
        plan = DeployPlan(c.region, account, o.function_name, name)
        self._bucket(plan)
        deployed = deployed_variables(c.lam, o.function_name)
        key = self._secret(plan, plaintext=bool(deployed.get(ENV_SIGNING_KEY)))
        grants = deployment_grants(deployed.get(ENV_GRANTS), o, name)
        role_arn, role_id = self._role(plan, grants, key.arn)
        self._secret_policy(plan, key, role_id, caller)
        self._log_group(plan)
        layer_arn = self._layer(plan)
        package = function_package()
        settings = function_settings(o, role_arn=role_arn, layer_arn=layer_arn, bucket=name, key=key, grants=grants)
        current = self._function(plan, package, settings)
        self._aliases(plan, current)
        plan.at_rest += self._at_rest(plan, package, layer_arn)
        return plan

    def _placeholder(self, what: str) -> str:
        return f"<{what}, known once created>"

    def _bucket(self, plan: DeployPlan) -> None:
        steps = bucket_steps(self.clients.s3, plan.bucket, self.options, self.clients.region)
        resource = f"bucket {plan.bucket}"
        if steps is None:
            plan.unchanged.append(f"{resource} (not created by lambdamr deploy: used as it is)")
            return
        if self.options.require_tls:
            plan.documents["bucket policy"] = tls_only_policy(plan.bucket, self.partition)
        for step in steps:
            plan.steps.append(PlannedStep(resource, imperative(step.change), step.document))
        if not steps:
            plan.unchanged.append(f"{resource} and its settings")

    def _secret(self, plan: DeployPlan, *, plaintext: bool) -> SecretRef:
        o = self.options
        resource = f"Secrets Manager secret {o.secret_name}"
        description = describe_secret(self.clients.secrets, o.secret_name)
        if description is None:
            what = (
                f"create {resource}, moving the signing key out of the function's configuration into it"
                if plaintext
                else f"create {resource} holding a new signing key"
            )
            plan.steps.append(PlannedStep(resource, what))
            arn = f"arn:{self.partition}:secretsmanager:{plan.region}:{plan.account}:secret:{o.secret_name}-??????"
            self._new_secret, self._secret_deleted = True, False
            return SecretRef(arn, self._placeholder("the key's version id"))
        self._new_secret = False
        self._secret_deleted = bool(description.get("DeletedDate"))
        if not is_ours(description):
            raise ResourceNotOursError.named("Secrets Manager secret", o.secret_name)
        if description.get("DeletedDate"):
            plan.steps.append(PlannedStep(resource, f"restore {resource} (teardown had scheduled its deletion)"))
        else:
            plan.unchanged.append(resource)
        return SecretRef(str(description["ARN"]), current_key_version(description))

    def _role(self, plan: DeployPlan, grants: Any, secret_arn: str) -> tuple[str, str]:
        o = self.options
        iam = self.clients.iam
        policy = checked_runtime_policy(o, grants, secret_arn, plan.region, plan.account)
        plan.documents["role trust policy"] = TRUST_POLICY
        plan.documents["role inline policy lambdamr-runtime"] = policy
        resource = f"IAM role {o.role_name}"
        role = existing_role(iam, o.role_name)
        if role is None:
            plan.steps.append(PlannedStep(resource, f"create {resource}, which only Lambda may assume", TRUST_POLICY))
            plan.steps.append(PlannedStep(resource, f"attach the runtime policy of {o.role_name}", policy))
            return f"arn:{self.partition}:iam::{plan.account}:role/{o.role_name}", self._placeholder("the role's unique id")
        if current_policy(iam, o.role_name) != policy:
            plan.steps.append(PlannedStep(resource, f"update the runtime policy of {o.role_name}", policy))
        else:
            plan.unchanged.append(f"{resource} and its policy")
        return str(role["Arn"]), str(role["RoleId"])

    def _secret_policy(self, plan: DeployPlan, key: SecretRef, role_id: str, caller: dict[str, Any]) -> None:
        sm = self.clients.secrets
        # a secret scheduled for deletion answers no reads until deploy restores it
        readable = not self._new_secret and not self._secret_deleted
        current = sm.get_resource_policy(SecretId=key.arn).get("ResourcePolicy") if readable else None
        wanted = wanted_secret_policy(current, role_id=role_id, caller=caller)
        plan.documents["secret resource policy"] = wanted
        if not current or json.loads(current) != wanted:
            plan.steps.append(
                PlannedStep(
                    f"Secrets Manager secret {self.options.secret_name}", imperative(secret_policy_change(wanted)), wanted
                )
            )

    def _log_group(self, plan: DeployPlan) -> None:
        o, logs = self.options, self.clients.logs
        groups = logs.describe_log_groups(logGroupNamePrefix=o.log_group).get("logGroups", [])
        group = next((g for g in groups if g["logGroupName"] == o.log_group), None)
        self._log_bytes = int((group or {}).get("storedBytes", 0))
        resource = f"log group {o.log_group}"
        if group is None:
            plan.steps.append(PlannedStep(resource, f"create {resource}, keeping logs {LOG_RETENTION_DAYS} days"))
        elif log_group_is_ours(logs, o.log_group) and group.get("retentionInDays") != LOG_RETENTION_DAYS:
            plan.steps.append(PlannedStep(resource, f"set the retention of {o.log_group} to {LOG_RETENTION_DAYS} days"))
        else:
            plan.unchanged.append(resource)

    def _layer(self, plan: DeployPlan) -> str:
        o, lam = self.options, self.clients.lam
        packages = layer_packages(o.packages)
        spec = layer_spec_hash(packages, o.python_version, o.architecture)
        layer_arn = find_layer(lam, o.layer_name, spec)
        resource = f"layer {o.layer_name}"
        if layer_arn is None:
            plan.steps.append(
                PlannedStep(
                    resource,
                    f"publish a version of layer {o.layer_name}: {' '.join(packages)}, installed by pip for "
                    f"{o.runtime} {o.architecture} (its size is known after the build)",
                )
            )
            layer_arn = f"arn:{self.partition}:lambda:{plan.region}:{plan.account}:layer:{o.layer_name}:<new version>"
        else:
            plan.unchanged.append(f"{resource} version {layer_arn.rsplit(':', 1)[-1]} (same packages, Python and architecture)")
        old = sorted(
            int(v["Version"])
            for v in _layer_versions(lam, o.layer_name)
            if (v.get("Description") or "").startswith(LAYER_DESCRIPTION) and v["LayerVersionArn"] != layer_arn
        )
        if old:
            plan.steps.append(PlannedStep(resource, f"delete old version(s) of layer {o.layer_name}: {', '.join(map(str, old))}"))
        return layer_arn

    def _function(self, plan: DeployPlan, package: bytes, settings: dict[str, Any]) -> dict[str, Any] | None:
        """Plan the function and its $LATEST event-invoke config; return its configuration
        when it exists and stays as it is (None when it is created or changed)."""
        from botocore.exceptions import ClientError

        o, lam = self.options, self.clients.lam
        resource = f"function {o.function_name}"
        try:
            current = lam.get_function(FunctionName=o.function_name)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            plan.steps.append(
                PlannedStep(
                    resource, f"create {resource} ({o.runtime}, {o.architecture}, {human_size(len(package))} of code)", settings
                )
            )
            self._retries(plan, "$LATEST", float(o.timeout_s), exists=False)
            return None
        if (current.get("Tags") or {}).get("lambdamr:managed") != "true":
            raise ResourceNotOursError.named("Lambda function", o.function_name)
        config = current["Configuration"]
        changed = False
        if config.get("CodeSha256") != code_sha256(package) or (config.get("Architectures") or ["x86_64"])[0] != o.architecture:
            plan.steps.append(PlannedStep(resource, f"update the code of {o.function_name}"))
            changed = True
        drift = config_drift(config, settings)
        if drift:
            plan.steps.append(
                PlannedStep(resource, f"update the configuration of {o.function_name} ({', '.join(drift)})", settings)
            )
            changed = True
        plaintext = [
            str(v["Version"])
            for v in _function_versions(lam, o.function_name)
            if v.get("Version") != "$LATEST" and ENV_SIGNING_KEY in ((v.get("Environment") or {}).get("Variables") or {})
        ]
        if plaintext:
            plan.steps.append(
                PlannedStep(
                    resource,
                    f"delete {len(plaintext)} published version(s) of {o.function_name} that hold the plaintext signing key",
                )
            )
        if not changed:
            plan.unchanged.append(f"{resource} code and configuration")
        self._retries(plan, "$LATEST", float(o.timeout_s), exists=True)
        return None if changed else dict(config)

    def _retries(self, plan: DeployPlan, qualifier: str, timeout: float, *, exists: bool) -> None:
        from botocore.exceptions import ClientError

        o = self.options
        wanted = {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": max_event_age(timeout)}
        if exists:
            target = {"FunctionName": o.function_name, **({"Qualifier": qualifier} if qualifier != "$LATEST" else {})}
            try:
                current = self.clients.lam.get_function_event_invoke_config(**target)
                if all(current.get(k) == v for k, v in wanted.items()):
                    return
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
        plan.steps.append(
            PlannedStep(
                f"function {o.function_name}",
                f"turn off Lambda's automatic retries of {o.function_name}:{qualifier} (the driver retries; "
                f"events older than {wanted['MaximumEventAgeInSeconds']} s are dropped)",
                wanted,
            )
        )

    def _aliases(self, plan: DeployPlan, unchanged_config: dict[str, Any] | None) -> None:
        from botocore.exceptions import ClientError

        o, lam = self.options, self.clients.lam
        name = alias_name(o.memory_mb, o.timeout_s)
        resource = f"function {o.function_name}"
        aliases = [] if plan_creates(plan, resource) else list(_aliases(lam, o.function_name))
        for alias in aliases:
            timeout = alias_timeout(str(alias["Name"]))
            if timeout is not None and alias["Name"] != name:
                self._retries(plan, str(alias["Name"]), timeout, exists=True)
        target = next((a for a in aliases if a["Name"] == name), None)
        keep = False
        if unchanged_config is not None and target is not None:
            try:
                published = lam.get_function_configuration(FunctionName=o.function_name, Qualifier=name)
                latest = DeployedRuntime.from_configuration(unchanged_config)
                version = DeployedRuntime.from_configuration(published)
                keep = all(getattr(version, f) == getattr(latest, f) for f in _ALIAS_FIELDS)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
        if keep:
            plan.unchanged.append(f"alias {name}")
            self._retries(plan, name, float(o.timeout_s), exists=True)
        else:
            how = "point alias" if target else "create alias"
            plan.steps.append(
                PlannedStep(
                    f"alias {name}",
                    f"publish a version of {o.function_name} with {o.memory_mb} MB and {lambda_timeout(o.timeout_s)} s, "
                    f"{how} {name} at it, with Lambda's retries off",
                )
            )
        # prune_versions: what no alias uses, older than the newest version an alias uses
        used = {str(a["FunctionVersion"]) for a in aliases if keep or a["Name"] != name}
        newest = max((int(v) for v in used if v.isdigit()), default=0) if keep else float("inf")
        versions = [] if not aliases else [str(v["Version"]) for v in _function_versions(lam, o.function_name)]
        unused = [v for v in versions if v.isdigit() and v not in used and int(v) < newest]
        if unused:
            plan.steps.append(
                PlannedStep(resource, f"delete {len(unused)} version(s) of {o.function_name} no alias uses: {', '.join(unused)}")
            )

    def _at_rest(self, plan: DeployPlan, package: bytes, layer_arn: str) -> list[AtRest]:
        layer = None
        if "<" not in layer_arn:
            number = int(layer_arn.rsplit(":", 1)[1])
            layer = int(
                self.clients.lam.get_layer_version(LayerName=self.options.layer_name, VersionNumber=number)["Content"]["CodeSize"]
            )
        stored, complete = (0, True) if plan_creates(plan, f"bucket {plan.bucket}") else bucket_size(self.clients.s3, plan.bucket)
        return at_rest(
            function_code=len(package) * 2,  # $LATEST and the alias's published version each keep a copy
            layer=layer,
            bucket=plan.bucket,
            bucket_bytes=stored,
            bucket_complete=complete,
            log_group=self.options.log_group,
            log_bytes=self._log_bytes,
        )


def plan_creates(plan: DeployPlan, resource: str) -> bool:
    return any(s.resource == resource and s.what.startswith("create ") for s in plan.steps)


def _layer_versions(lam: Any, layer_name: str) -> list[dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        return [
            v
            for page in lam.get_paginator("list_layer_versions").paginate(LayerName=layer_name)
            for v in page.get("LayerVersions", [])
        ]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        return []


def _function_versions(lam: Any, function_name: str) -> list[dict[str, Any]]:
    pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=function_name)
    return [v for page in pages for v in page.get("Versions", [])]


def _aliases(lam: Any, function_name: str) -> list[dict[str, Any]]:
    return [a for page in lam.get_paginator("list_aliases").paginate(FunctionName=function_name) for a in page.get("Aliases", [])]
