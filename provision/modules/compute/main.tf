# The platform's hosts: for each service, count instances named PREFIX-SERVICE-N.
#
# With no network (network_id null: Nova's networks "none", for a cloud without Neutron such as
# labplane's local cloud local-servers) a host has no address; it is given a made-up one from
# stand_in_cidr, recorded in its metadata (labplane-stand-in-address) and read back from Nova
# for the hosts output. Nothing answers at it.

locals {
  hosts = merge([
    for service, spec in var.services : {
      for i in range(spec.count) : "${service}-${i + 1}" => {
        service = service
        number  = i + 1
        name    = "${var.name_prefix}-${service}-${i + 1}"
        flavor  = coalesce(spec.flavor, var.default_flavor)
        # lms from host 10, cms from 40, guacd from 70 (null: a network gives the address)
        stand_in_address = var.network_id == null ? try(cidrhost(var.stand_in_cidr, local.first_stand_in[service] + i), null) : null
      }
    }
  ]...)
  first_stand_in = { lms = 10, cms = 40, guacd = 70 }
}

resource "openstack_compute_instance_v2" "host" {
  for_each = local.hosts

  name              = each.value.name
  image_name        = var.image_name
  flavor_name       = each.value.flavor
  key_pair          = var.key_pair
  availability_zone = var.availability_zone
  security_groups   = lookup(var.security_groups, each.value.service, null)
  network_mode      = var.network_id == null ? "none" : null

  metadata = merge(
    var.metadata,
    { labplane-environment = var.name_prefix, labplane-service = each.value.service },
    each.value.stand_in_address == null ? {} : { labplane-stand-in-address = each.value.stand_in_address },
  )

  dynamic "network" {
    for_each = var.network_id == null ? [] : [var.network_id]
    content {
      uuid = network.value
    }
  }

  lifecycle {
    precondition {
      condition     = var.network_id != null || (each.value.stand_in_address != null && each.value.number <= 30)
      error_message = "With no network_id, the hosts' made-up addresses need stand_in_cidr, and a service at most 30 hosts."
    }
  }
}

# each host's address as the cloud reports it: on its network, or the made-up one in its metadata
locals {
  addresses = {
    for key, host in openstack_compute_instance_v2.host :
    key => var.network_id == null ? host.all_metadata["labplane-stand-in-address"] : host.access_ip_v4
  }
}
