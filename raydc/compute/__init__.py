"""How steps run fast, whatever they compute: minibatches and augmentation draws, steps replayed as CUDA graphs,
fused loss terms, the network's precision, loss totals kept on the device, and the optimizer."""
