"""The Ray Serve backend (optional extra ``genhub[ray]``): `genhub serve --backend ray`, `genhub deploy render`.

``app`` (the Serve application; imports Ray), ``settings`` (per-model resources and autoscaling),
``deploy`` (the Serve config file), ``runner`` (start and stop Ray and Serve), ``commands`` (the CLI),
``proxy`` (the servicer function Serve's gRPC proxies import, with a fix for cancelled streams).
"""
