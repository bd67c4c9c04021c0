# The platform's hosts: for each service, count instances named PREFIX-SERVICE-N.

locals {
  hosts = merge([
    for service, spec in var.services : {
      for i in range(spec.count) : "${service}-${i + 1}" => {
        service = service
        name    = "${var.name_prefix}-${service}-${i + 1}"
        flavor  = coalesce(spec.flavor, var.default_flavor)
      }
    }
  ]...)
}

resource "openstack_compute_instance_v2" "host" {
  for_each = local.hosts

  name              = each.value.name
  image_name        = var.image_name
  flavor_name       = each.value.flavor
  key_pair          = var.key_pair
  availability_zone = var.availability_zone
  security_groups   = var.security_groups[each.value.service]

  metadata = merge(var.metadata, {
    labplane-environment = var.name_prefix
    labplane-service     = each.value.service
  })

  network {
    uuid = var.network_id
  }
}
