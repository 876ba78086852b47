"""The one place an Azure credential is built: DefaultAzureCredential signing in at the cloud's
authority (login.microsoftonline.us in Azure Government), for the model, embeddings and sources.

azure-identity is imported when a credential is first needed, so commands that never reach Azure
start without it. Token scopes are chosen by each caller for its service and cloud.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.settings import LOGIN_AUTHORITY, Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def azure_credential(settings: Settings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(authority=LOGIN_AUTHORITY[settings.azure_cloud])
