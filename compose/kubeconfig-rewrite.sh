#!/bin/sh
# k3s writes its kubeconfig for https://127.0.0.1:6443; Airflow reaches it as k3s:6443.
set -eu
until [ -s /output/kubeconfig.yaml ]; do sleep 1; done
sed 's#https://127.0.0.1:6443#https://k3s:6443#' /output/kubeconfig.yaml > /kube/config
chmod 644 /kube/config
