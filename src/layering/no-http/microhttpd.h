/* This stage may not use libmicrohttpd: only src/http talks HTTP.
 * See docs/ARCHITECTURE.md. */
#error "libmicrohttpd is not for this stage (docs/ARCHITECTURE.md: only src/http talks HTTP)"
