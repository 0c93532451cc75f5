"""The gateway's admission for workbench generations (``llmpick serve --ui``).

A column run from the page is asked of the same models as ``/v1`` calls, so it
is admitted the same way: the logged-in key's model list, its RPM and TPM, and
the request rules (:meth:`SecurityPolicy.admit`). Without keys only the rules apply.
"""

from __future__ import annotations

from llmpick.serve.security import KeyPrincipal, SecurityPolicy

__all__ = ["KeyAdmission", "admission_for"]


class KeyAdmission:
    """Admission of one key's workbench generations (implements ``ui.capabilities.Admission``)."""

    def __init__(self, policy: SecurityPolicy, principal: KeyPrincipal) -> None:
        self.policy = policy
        self.principal = principal

    def may_use(self, model: str) -> bool:
        """Whether the key's model list lets it use ``model``."""
        allowed = self.principal.allowed_models
        return not allowed or model in allowed or model.partition(":")[0] in allowed

    async def admit(self, model: str, prompt_tokens: int, max_tokens: int | None) -> None:
        """The policy's admission, as for an API request on ``model``."""
        await self.policy.admit(self.principal, model, prompt_tokens, max_tokens)

    async def settle(self, reserved: int, used: int) -> None:
        """Give back the unused part of an admitted generation's TPM reservation."""
        if self.principal.key_id is not None:
            await self.policy.limiter.settle(
                self.principal.key_id, tpm=self.principal.tpm, reserved=reserved, used=used
            )


async def admission_for(policy: SecurityPolicy, secret: str | None) -> KeyAdmission:
    """The admission of the key ``secret`` (anonymous: the rules only)."""
    if secret is None:
        return KeyAdmission(policy, KeyPrincipal())
    key = await policy.verify_key(secret)
    principal = KeyPrincipal(
        key_id=key.id, key_name=key.name, allowed_models=key.models, rpm=key.rpm, tpm=key.tpm
    )
    return KeyAdmission(policy, principal)
