# FazAI controller image. Build: docker build -t fazai .
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/fazai
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip install --no-cache-dir .

# Desired state is mounted or cloned at run time; keys and known_hosts come from secrets.
RUN useradd --system --create-home --home-dir /var/lib/fazai fazai
USER fazai
WORKDIR /var/lib/fazai
ENTRYPOINT ["fazai"]
CMD ["--help"]
