from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Deployment",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("release", models.CharField(max_length=100)),
                ("service", models.CharField(max_length=10)),
                ("deployed_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["-deployed_at"]},
        ),
    ]
