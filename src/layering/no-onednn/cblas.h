/* This stage may not use BLAS: only src/nn runs the network.
 * See docs/ARCHITECTURE.md. */
#error "BLAS is not for this stage (docs/ARCHITECTURE.md: only src/nn computes)"
