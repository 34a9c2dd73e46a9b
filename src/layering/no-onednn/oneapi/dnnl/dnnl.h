/* This stage may not use oneDNN: only src/nn runs the network.
 * See docs/ARCHITECTURE.md. */
#error "oneDNN is not for this stage (docs/ARCHITECTURE.md: only src/nn computes)"
