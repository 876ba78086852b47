"""KQL on Azure Data Explorer: the `adx` source kind, through azure-kusto-data.

`hosts` decides which cluster URIs may be used at all (no SDK needed, so sources files are checked
when they load); `engine` is the Engine; `client` builds the SDK's client for one cluster; `values`,
`errors` and `schema` turn what the service sends into ResultSets, QueryErrors and a Catalog.
"""
