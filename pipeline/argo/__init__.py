"""Argo Workflows objects built with Hera from the DAG and the configuration, one Argo concept per module."""
