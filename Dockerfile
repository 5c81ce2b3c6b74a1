# The simulator installed (not editable) with the plot extra; `docker.sh` runs it on the
# current folder mounted at /work.
FROM python:3.11-slim
WORKDIR /opt/llmservingsim-py
COPY . .
RUN pip install --no-cache-dir --disable-pip-version-check ".[plot]"
# matplotlib needs a writable cache folder; the container runs as the calling user.
ENV MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /work
ENTRYPOINT ["llmservingsim"]
