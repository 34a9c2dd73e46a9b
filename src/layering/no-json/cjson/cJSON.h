/* This stage may not use cJSON: JSON is read and written only by app
 * (json_render.c), http, and the safetensors header parser (weights).
 * See docs/ARCHITECTURE.md. */
#error "cJSON is not for this stage (docs/ARCHITECTURE.md: JSON stays at the edge)"
