"""Stop the server through flux-restful-client: stop.py URL USER PASSWORD SECRET"""
import sys

from flux_restful_client.main.client import FluxRestfulClient

url, user, password, secret = sys.argv[1:5]
cli = FluxRestfulClient(host=url, user=user, token=password, secret_key=secret)
print(cli.stop_service())
