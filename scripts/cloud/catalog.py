#!/usr/bin/env python3
"""Idempotent Keystone catalog setup and checks for the local cloud.

Used by scripts/cloud/up.sh. Python standard library only (urllib).

  catalog.py ensure --auth-url URL --region-one-image URL --region-two-image URL
                    --region-three-image URL
      Makes sure these exist (creating or fixing only what is missing):
        * project ``service``; user ``glance`` with roles admin and service on it;
        * regions ``RegionTwo`` and ``RegionThree``;
        * service ``glance`` (type image) with public/internal/admin endpoints
          in RegionOne and RegionTwo;
        * identity endpoints in RegionTwo too (keystonemiddleware looks up the
          identity endpoint in its own region);
        * project ``demo``; user ``demo`` with roles member and admin on it.
  catalog.py check --auth-url URL --regions RegionOne,RegionTwo
      Gets an admin token and does an authenticated GET /v2/images on the
      public image endpoint of each region.

Passwords come from the environment only (never the command line):
OIT_ADMIN_PASSWORD (required), OIT_GLANCE_PASSWORD and OIT_DEMO_PASSWORD
(required for ``ensure``). Nothing secret is printed.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 30
DOMAIN = "default"
INTERFACES = ("public", "internal", "admin")


class CloudError(Exception):
    """A request failed; the message names the method, URL and status."""


def log(msg):
    print(f"cloud-catalog: {msg}", file=sys.stderr)


def request(method, url, token=None, body=None, ok=(200, 201, 204)):
    """Send one request; return (status, headers, parsed JSON or None)."""
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            status, hdrs, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, hdrs, raw = err.code, err.headers, err.read()
    except (urllib.error.URLError, OSError) as err:
        raise CloudError(f"{method} {url}: {err}") from err
    if status not in ok:
        detail = raw[:300].decode("utf-8", "replace").strip()
        raise CloudError(f"{method} {url}: HTTP {status}: {detail}")
    parsed = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
    return status, hdrs, parsed


def env_password(name):
    value = os.environ.get(name)
    if not value:
        raise CloudError(f"environment variable {name} is not set")
    return value


def get_token(auth_url, user, password, project):
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"id": DOMAIN}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"id": DOMAIN}}},
        }
    }
    _, hdrs, parsed = request("POST", f"{auth_url}/auth/tokens", body=body, ok=(201,))
    token = hdrs.get("X-Subject-Token")
    if not token:
        raise CloudError(f"POST {auth_url}/auth/tokens: no X-Subject-Token header")
    return token, parsed["token"]


def try_token(auth_url, user, password, project):
    try:
        get_token(auth_url, user, password, project)
        return True
    except CloudError:
        return False


class Catalog:
    """Idempotent helpers on the Keystone v3 API."""

    def __init__(self, auth_url, token):
        self.url = auth_url
        self.token = token
        self.changes = []

    def get(self, path):
        return request("GET", self.url + path, self.token)[2]

    def find_one(self, collection, **filters):
        query = urllib.parse.urlencode(filters)
        items = self.get(f"/{collection}?{query}")[collection]
        return items[0] if items else None

    def ensure_project(self, name, description):
        project = self.find_one("projects", name=name, domain_id=DOMAIN)
        if project:
            return project["id"]
        body = {"project": {"name": name, "domain_id": DOMAIN, "description": description}}
        project = request("POST", f"{self.url}/projects", self.token, body, ok=(201,))[2]
        self.changes.append(f"project {name}")
        return project["project"]["id"]

    def ensure_role(self, name):
        role = self.find_one("roles", name=name)
        if role:
            return role["id"]
        role = request("POST", f"{self.url}/roles", self.token, {"role": {"name": name}}, ok=(201,))
        self.changes.append(f"role {name}")
        return role[2]["role"]["id"]

    def ensure_user(self, name, password, project_id):
        user = self.find_one("users", name=name, domain_id=DOMAIN)
        if user is None:
            body = {
                "user": {
                    "name": name,
                    "domain_id": DOMAIN,
                    "password": password,
                    "default_project_id": project_id,
                    "enabled": True,
                }
            }
            user = request("POST", f"{self.url}/users", self.token, body, ok=(201,))[2]["user"]
            self.changes.append(f"user {name}")
        return user["id"]

    def fix_password(self, auth_url, name, user_id, password, project_name):
        """Reset the password when it no longer matches (after role grants)."""
        if try_token(auth_url, name, password, project_name):
            return
        body = {"user": {"password": password, "enabled": True}}
        request("PATCH", f"{self.url}/users/{user_id}", self.token, body, ok=(200,))
        self.changes.append(f"password of user {name}")

    def ensure_grant(self, project_id, user_id, role_id, label):
        path = f"{self.url}/projects/{project_id}/users/{user_id}/roles/{role_id}"
        status = request("HEAD", path, self.token, ok=(204, 404))[0]
        if status == 204:
            return
        request("PUT", path, self.token, ok=(204,))
        self.changes.append(f"role grant {label}")

    def ensure_region(self, region_id):
        status = request("GET", f"{self.url}/regions/{region_id}", self.token, ok=(200, 404))[0]
        if status == 200:
            return
        body = {"region": {"id": region_id, "description": "local cloud"}}
        request("POST", f"{self.url}/regions", self.token, body, ok=(201,))
        self.changes.append(f"region {region_id}")

    def ensure_service(self, name, service_type):
        service = self.find_one("services", type=service_type)
        if service:
            return service["id"]
        body = {"service": {"name": name, "type": service_type, "enabled": True}}
        service = request("POST", f"{self.url}/services", self.token, body, ok=(201,))[2]
        self.changes.append(f"service {name} ({service_type})")
        return service["service"]["id"]

    def ensure_endpoints(self, service_id, region_id, url, label):
        for interface in INTERFACES:
            query = urllib.parse.urlencode(
                {"service_id": service_id, "interface": interface, "region_id": region_id}
            )
            found = self.get(f"/endpoints?{query}")["endpoints"]
            if found:
                endpoint = found[0]
                if endpoint["url"] != url or not endpoint.get("enabled", True):
                    body = {"endpoint": {"url": url, "enabled": True}}
                    request(
                        "PATCH",
                        f"{self.url}/endpoints/{endpoint['id']}",
                        self.token,
                        body,
                        ok=(200,),
                    )
                    self.changes.append(f"{label} {interface} endpoint in {region_id} -> {url}")
                continue
            body = {
                "endpoint": {
                    "service_id": service_id,
                    "interface": interface,
                    "region_id": region_id,
                    "url": url,
                    "enabled": True,
                }
            }
            request("POST", f"{self.url}/endpoints", self.token, body, ok=(201,))
            self.changes.append(f"{label} {interface} endpoint in {region_id}")


def ensure(args):
    admin_password = env_password("OIT_ADMIN_PASSWORD")
    glance_password = env_password("OIT_GLANCE_PASSWORD")
    demo_password = env_password("OIT_DEMO_PASSWORD")
    token, _ = get_token(args.auth_url, "admin", admin_password, "admin")
    cat = Catalog(args.auth_url, token)

    roles = {name: cat.ensure_role(name) for name in ("admin", "member", "reader", "service")}

    service_project = cat.ensure_project("service", "service users")
    glance_user = cat.ensure_user("glance", glance_password, service_project)
    for role in ("admin", "service"):
        cat.ensure_grant(service_project, glance_user, roles[role], f"{role} to glance on service")
    cat.fix_password(args.auth_url, "glance", glance_user, glance_password, "service")

    demo_project = cat.ensure_project("demo", "second tenant for tests")
    demo_user = cat.ensure_user("demo", demo_password, demo_project)
    for role in ("member", "admin"):
        cat.ensure_grant(demo_project, demo_user, roles[role], f"{role} to demo on demo")
    cat.fix_password(args.auth_url, "demo", demo_user, demo_password, "demo")

    cat.ensure_region("RegionOne")
    cat.ensure_region("RegionTwo")
    cat.ensure_region("RegionThree")
    identity = cat.ensure_service("keystone", "identity")
    cat.ensure_endpoints(identity, "RegionOne", args.auth_url, "identity")
    cat.ensure_endpoints(identity, "RegionTwo", args.auth_url, "identity")
    cat.ensure_endpoints(identity, "RegionThree", args.auth_url, "identity")
    image = cat.ensure_service("glance", "image")
    cat.ensure_endpoints(image, "RegionOne", args.region_one_image, "image")
    cat.ensure_endpoints(image, "RegionTwo", args.region_two_image, "image")
    cat.ensure_endpoints(image, "RegionThree", args.region_three_image, "image")

    if cat.changes:
        for change in cat.changes:
            log(f"created/updated {change}")
    else:
        log("catalog up to date")


def check(args):
    admin_password = env_password("OIT_ADMIN_PASSWORD")
    token, body = get_token(args.auth_url, "admin", admin_password, "admin")
    endpoints = {}
    for service in body.get("catalog", []):
        if service.get("type") != "image":
            continue
        for endpoint in service.get("endpoints", []):
            if endpoint.get("interface") == "public":
                endpoints[endpoint.get("region_id")] = endpoint["url"].rstrip("/")
    for region in args.regions.split(","):
        url = endpoints.get(region)
        if not url:
            raise CloudError(f"token catalog has no public image endpoint in {region}")
        _, _, images = request("GET", f"{url}/v2/images?limit=1000", token, ok=(200,))
        count = len(images.get("images", [])) if images else 0
        log(f"{region}: GET {url}/v2/images -> 200 ({count} images)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_ensure = sub.add_parser("ensure", help="create/fix the catalog")
    p_ensure.add_argument("--auth-url", required=True)
    p_ensure.add_argument("--region-one-image", required=True)
    p_ensure.add_argument("--region-two-image", required=True)
    p_ensure.add_argument("--region-three-image", required=True)
    p_check = sub.add_parser("check", help="authenticated GET /v2/images per region")
    p_check.add_argument("--auth-url", required=True)
    p_check.add_argument("--regions", required=True)
    args = parser.parse_args()
    args.auth_url = args.auth_url.rstrip("/")
    try:
        if args.command == "ensure":
            ensure(args)
        else:
            check(args)
    except CloudError as err:
        print(f"cloud-catalog: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
