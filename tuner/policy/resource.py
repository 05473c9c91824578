"""What a policy scales: an endpoint variant's instances or an inference component's copies.

``Resource`` names one scalable target the way Application Auto Scaling does (its ``ResourceId``
and ``ScalableDimension``); ``ResourceKind`` says which of the two kinds it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tuner.errors import PolicyError


class ResourceKind(enum.Enum):
    """What a scalable target scales: instances of a variant or copies of an inference component."""

    VARIANT = "variant"
    INFERENCE_COMPONENT = "inference-component"

    @property
    def scalable_dimension(self) -> str:
        """The ScalableDimension AWS uses for this kind."""
        if self is ResourceKind.VARIANT:
            return "sagemaker:variant:DesiredInstanceCount"
        return "sagemaker:inference-component:DesiredCopyCount"

    @property
    def noun(self) -> str:
        """Readable name for messages: "endpoint variant", "inference component"."""
        return "endpoint variant" if self is ResourceKind.VARIANT else "inference component"

    @property
    def min_capacity_floor(self) -> int:
        """Smallest MinCapacity AWS accepts: variants keep one instance, components may go to 0."""
        return 1 if self is ResourceKind.VARIANT else 0

    @classmethod
    def from_dimension(cls, dimension: str) -> ResourceKind:
        for kind in cls:
            if kind.scalable_dimension == dimension:
                return kind
        allowed = ", ".join(k.scalable_dimension for k in cls)
        raise PolicyError(f"ScalableDimension must be one of {allowed}, got {dimension!r}")


@dataclass(frozen=True)
class Resource:
    """The thing a policy scales: ``endpoint/<ep>/variant/<v>`` or ``inference-component/<ic>``."""

    kind: ResourceKind
    name: str
    """Endpoint name for a variant, component name for an inference component."""
    variant: str | None = None
    """Variant name (variants only)."""

    @classmethod
    def for_variant(cls, endpoint: str, variant: str = "AllTraffic") -> Resource:
        return cls(ResourceKind.VARIANT, endpoint, variant)

    @classmethod
    def for_component(cls, component: str) -> Resource:
        return cls(ResourceKind.INFERENCE_COMPONENT, component)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise PolicyError(f"resource name must be non-empty without '/', got {self.name!r}")
        if self.kind is ResourceKind.VARIANT and (not self.variant or "/" in self.variant):
            raise PolicyError(f"variant name must be non-empty without '/', got {self.variant!r}")

    @property
    def resource_id(self) -> str:
        if self.kind is ResourceKind.VARIANT:
            return f"endpoint/{self.name}/variant/{self.variant}"
        return f"inference-component/{self.name}"

    @property
    def scalable_dimension(self) -> str:
        return self.kind.scalable_dimension

    @property
    def endpoint(self) -> str:
        """The endpoint name (variants only)."""
        if self.kind is not ResourceKind.VARIANT:
            raise PolicyError(f"{self.resource_id} is not an endpoint variant")
        return self.name

    @classmethod
    def parse(cls, resource_id: str) -> Resource:
        """``endpoint/my-ep/variant/AllTraffic`` -> Resource.for_variant("my-ep", "AllTraffic")."""
        parts = resource_id.split("/")
        if len(parts) == 4 and parts[0] == "endpoint" and parts[2] == "variant":
            return cls.for_variant(parts[1], parts[3])
        if len(parts) == 2 and parts[0] == "inference-component":
            return cls.for_component(parts[1])
        raise PolicyError(
            "ResourceId must be 'endpoint/<endpoint>/variant/<variant>' or "
            f"'inference-component/<name>', got {resource_id!r}"
        )

    def __str__(self) -> str:
        return self.resource_id
