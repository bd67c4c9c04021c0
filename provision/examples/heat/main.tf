# A stand-in for the compute module on a cloud that has only Heat (labplane's local cloud: no
# Nova, no Neutron): one Heat stack whose nodes are OS::Heat::TestResource resources, one per
# host. Each node holds its host's made-up address; the hosts output reads the addresses back
# from the stack's outputs, as the compute module reads them from the instances. The provider
# reads its cloud from OS_CLOUD (labplane sets it from the spec's provision.cloud).

locals {
  nodes = flatten([
    for service in ["lms", "cms", "guacd"] : [
      for i in range(var.services[service].count) : {
        service = service
        key     = "${service}-${i + 1}"
        name    = "${var.name_prefix}-${service}-${i + 1}"
        address = cidrhost(var.cidr, local.first_host[service] + i)
      }
    ]
  ])
  first_host = { lms = 10, cms = 40, guacd = 70 }

  template = {
    heat_template_version = "2021-04-16"
    description           = "labplane ${var.name_prefix}: stand-ins for the platform's hosts"
    resources = {
      for n in local.nodes : n.key => {
        type = "OS::Heat::TestResource"
        properties = {
          value            = n.address
          fail             = var.fail
          action_wait_secs = { create = var.create_wait_secs }
        }
      }
    }
    outputs = {
      for n in local.nodes : n.key => {
        description = n.name
        value       = { get_attr = [n.key, "output"] }
      }
    }
  }

  stack_outputs = { for o in openstack_orchestration_stack_v1.nodes.outputs : o.output_key => o.output_value }
}

resource "openstack_orchestration_stack_v1" "nodes" {
  name             = "${var.name_prefix}-nodes"
  disable_rollback = true
  timeout          = 10
  tags             = var.tags

  template_opts = {
    Bin = jsonencode(local.template)
  }
  # provider 3.4.0 cannot create a stack without an environment ("Data in neither json nor
  # yaml format"): an empty one
  environment_opts = {
    Bin = "{}"
  }
}
