"""Install mtu_toolkit (editable: ``pip install --no-build-isolation -e .``)."""
from setuptools import find_packages, setup


def read_requirements(path='requirements.txt'):
    with open(path) as f:
        return [ln.split('#')[0].strip() for ln in f if ln.split('#')[0].strip()]


setup(
    name='mtu_toolkit',
    version='0.1.0',
    description='Real-time video deblurring with stacked multi-task units (MTU), on mmengine',
    packages=find_packages(include=['mtu_toolkit', 'mtu_toolkit.*']),
    python_requires='>=3.9',
    install_requires=['torch>=2.0'] + read_requirements(),
    extras_require={'tests': read_requirements('requirements-tests.txt')},
    include_package_data=True,
    zip_safe=False,
)
