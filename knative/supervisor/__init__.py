"""What the kubelet does on the local plane: replicas as processes, the warm zygote, images."""
