# The `bulkmock` binary alone in a small image (the built-in suite is inside it):
#   docker build -t bulkmock .
#   docker run --rm -p 8080:8080 bulkmock serve --host 0.0.0.0 --base-url http://localhost:8080
#   docker run --rm bulkmock run --suite builtin          # the reference client on every case
# The runtime stage keeps `sh`, so `FROM bulkmock` plus your client can use `run --client-cmd`.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p bulkmock \
 && cp target/release/bulkmock /usr/local/bin/bulkmock \
 && strip /usr/local/bin/bulkmock

FROM debian:bookworm-slim
# CA certificates, for https JWKS URLs and https clients' servers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/bulkmock /usr/local/bin/bulkmock
RUN useradd --create-home --uid 10001 bulkmock
USER bulkmock
WORKDIR /home/bulkmock
EXPOSE 8080
ENTRYPOINT ["bulkmock"]
CMD ["--help"]
