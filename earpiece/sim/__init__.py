"""Protocol-faithful Asterisk simulator (AMI over TCP, ARI over HTTP/websocket, RTP over UDP)."""
